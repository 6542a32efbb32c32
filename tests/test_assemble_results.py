"""benchmarks/assemble_results.py: the results index and its --check, run as CI runs it (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "assemble_results.py"

PAGE = """# Area one: the answer

```
python benchmarks/area_one.py
```

First line of the summary,
second line of it ([zoo](zoo.md), [docs](../../docs/zoo.md), [web](https://arxiv.org/abs/1)).

| a | b |
|---|---|
| 1 | 2 |

Detail that is not the summary.
"""


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root), *args], capture_output=True, text=True, timeout=60
    )


def test_index_lists_title_link_and_first_prose_paragraph(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "area_one.md").write_text(PAGE, encoding="utf-8")
    (tmp_path / "results" / "zoo.md").write_text("# Zoo\n\n<!-- note -->\nZoo summary.\n", encoding="utf-8")
    assert _run(tmp_path).returncode == 0
    index = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert (
        "## [Area one: the answer](results/area_one.md)\n\nFirst line of the summary, second line of it "
        "([zoo](results/zoo.md), [docs](../docs/zoo.md), [web](https://arxiv.org/abs/1)).\n"
    ) in index
    assert "## [Zoo](results/zoo.md)\n\nZoo summary.\n" in index
    assert "Detail that is not the summary" not in index
    assert "without AVX-512" in index
    # ORDER puts zoo before pages it does not name
    assert index.index("results/zoo.md") < index.index("results/area_one.md")


def test_check_passes_when_current_and_fails_without_writing_when_stale(tmp_path):
    (tmp_path / "results").mkdir()
    page = tmp_path / "results" / "area_one.md"
    page.write_text(PAGE, encoding="utf-8")
    assert _run(tmp_path, "--check").returncode == 1  # no RESULTS.md yet
    assert not (tmp_path / "RESULTS.md").exists()
    assert _run(tmp_path).returncode == 0
    assert _run(tmp_path, "--check").returncode == 0
    written = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    page.write_text(PAGE.replace("First line", "A changed first line"), encoding="utf-8")
    stale = _run(tmp_path, "--check")
    assert stale.returncode == 1
    assert "out of date" in stale.stderr
    assert (tmp_path / "RESULTS.md").read_text(encoding="utf-8") == written


def test_missing_results_folder_is_bad_input(tmp_path):
    result = _run(tmp_path, "--check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no results/ folder" in result.stderr
