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


def _assemble_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_assemble_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendered_pages_and_tables_must_be_what_their_records_give(tmp_path, monkeypatch):
    mod = _assemble_module()
    (tmp_path / "results").mkdir()
    (tmp_path / "area.py").write_text(
        "import json, pathlib\n"
        "REC = pathlib.Path(__file__).parent / 'rec.json'\n"
        "def render_tables():\n"
        "    return '| a |\\n|---|\\n| %d |\\n' % json.loads(REC.read_text())['a']\n"
        "def render_page():\n"
        "    return '# Area\\n\\nText.\\n\\n' + render_tables()\n"
    )
    (tmp_path / "rec.json").write_text('{"a": 1}')
    (tmp_path / "results" / "area.md").write_text("# Area\n\nText.\n\n| a |\n|---|\n| 1 |\n")
    (tmp_path / "results" / "hand.md").write_text(
        "# Hand\n\nWritten around.\n\n| a |\n|---|\n| 1 |\n\nMore.\n"
    )
    monkeypatch.setattr(
        mod,
        "RENDERED",
        {"area": ("area.py", "render_page", "page"), "hand": ("area.py", "render_tables", "tables")},
    )
    assert mod.stale_pages(tmp_path) == []
    (tmp_path / "rec.json").write_text('{"a": 2}')  # the record changed, the pages did not
    problems = mod.stale_pages(tmp_path)
    assert len(problems) == 2 and "results/area.md" in problems[0] and "hand.md: table 1" in problems[1]


def test_tables_are_runs_of_pipe_lines():
    mod = _assemble_module()
    assert mod.tables("x\n| a |\n|---|\ny\n| b |\n") == ["| a |\n|---|", "| b |"]
