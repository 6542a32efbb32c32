"""No command replaces an existing output without --overwrite: exit 2, one line, the old output untouched.

Every command that writes is taken from its read-only-output case in tests/bad_inputs_cases.py, with the
output pointed at a path that already exists, once as a file and once as a non-empty directory. Whichever
kind the command writes, one of the two is its own kind of output and must be refused with a pointer to
``--overwrite``; the other is the wrong kind and must be refused too. Nothing under the workspace may
change in either case.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_inputs_cases import CASES, build_workspace, expand, snapshot

WRITERS = [c for c in CASES if c[1] == "read-only output"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_dirs):
    return build_workspace(tmp_path_factory.mktemp("existing") / "ws", tiny_dirs["llama"])


def _rejected(code: int, out: str, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"exit {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err + out, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    return lines[0]


@pytest.mark.parametrize("case", WRITERS, ids=[c[0].replace(" ", "-") for c in WRITERS])
def test_an_existing_output_needs_overwrite(case, ws, run_cli, tmp_path, monkeypatch):
    command, _cls, args, _phrase = case
    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path / "cache"))
    root = Path(ws["root"])
    said_overwrite = []
    for kind in ("file", "dir"):
        exist = root / f"existing-{kind}"
        exist.mkdir(exist_ok=True)
        (target,) = [a for a in args if a.startswith("{ro}/")]
        out = exist / target.removeprefix("{ro}/")
        if kind == "file":
            out.write_text("the user's earlier output\n")
        else:
            out.mkdir(exist_ok=True)
            (out / "keep.txt").write_text("the user's earlier output\n")
        names = {**ws, "ro": str(exist)}
        before = snapshot(root)
        line = _rejected(*run_cli(*expand(args, names)))
        assert snapshot(root) == before, f"{command}: the existing {kind} was changed"
        said_overwrite.append("--overwrite" in line)
    assert any(said_overwrite), f"{command}: neither refusal points to --overwrite"
