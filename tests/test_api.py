"""The Python API: the README's example runs as written, on tiny models standing in for the zoo."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO_STAND_INS = {"smollm2-135m": "llama", "gemma3-270m": "gemma3_text", "qwen2.5-coder-0.5b": "qwen2"}


def readme_python() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def tiny_zoo(tmp_path, tiny_dirs):
    """A zoo cache ($DAMOC_CACHE/zoo/NAME) whose entries are the tiny random models."""
    root = tmp_path / "cache"
    for name, arch in ZOO_STAND_INS.items():
        dest = root / "zoo" / name
        shutil.copytree(tiny_dirs[arch], dest)
        (dest / "damoc_zoo.json").write_text(json.dumps({"name": name, "stand_in": arch}))
    return root


def test_import_damoc_stays_light():
    code = "import sys, damoc; print('torch' in sys.modules, 'transformers' in sys.modules, damoc.API)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False False")


def test_damoc_select_is_callable_even_after_the_package_is_imported():
    import damoc
    import damoc.select.pipeline  # noqa: F401 - makes damoc.select the package

    assert callable(damoc.select) and callable(damoc.prune_layers)
    with pytest.raises(damoc.DamocError, match="job file .* does not exist"):
        damoc.select("no-such-job.yaml")


def test_readme_example_runs(tiny_zoo, tmp_path):
    script = tmp_path / "readme_example.py"
    script.write_text(readme_python())
    env = {**os.environ, "DAMOC_CACHE": str(tiny_zoo), "HF_HUB_OFFLINE": "1", "DAMOC_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[0] in ("smollm2-135m", "gemma3-270m")  # the best candidate, then the scores
    assert lines[1].startswith("removed layers [")
    assert re.match(r"sparsity 0\.50 -> runs/api_sparse", lines[2])
    assert (tmp_path / "runs" / "api_sparse" / "config.json").is_file()
    assert (tmp_path / "runs" / "api_demo" / "leaderboard.json").is_file()
    assert lines[3].startswith("100 rows kept; token rate")


def test_in_memory_models_and_one_line_errors(tiny_dirs, qa_file, one_thread):
    import damoc
    from damoc.model.arch import load_model

    model, tok = load_model(tiny_dirs["qwen2"], device="cpu")
    res = damoc.prune_layers(model, qa_file, tokenizer=tok, remove=1, merge="none", calib_samples=4)
    assert res.model is model and model.config.num_hidden_layers == 3 and res.path is None
    q = damoc.quantize(model, tokenizer=tok, method="rtn", bits=4, group_size=16, general="general")
    assert q.report.method == "rtn" and q.model is model
    with pytest.raises(damoc.DamocError, match="needs its tokenizer"):
        damoc.prune_layers(model, qa_file, remove=1)
    with pytest.raises(damoc.DamocError, match="say how many layers"):
        damoc.prune_layers(tiny_dirs["llama"], qa_file)
    with pytest.raises(damoc.DamocError, match="bits"):
        damoc.quantize(model, tokenizer=tok, bits=5)


def test_select_saves_in_memory_candidates_beside_the_run(tiny_dirs, tmp_path, monkeypatch):
    import damoc
    import damoc.select.pipeline as pipeline
    from damoc.model.arch import load_model

    seen = {}

    def fake_run_select(cfg, resume=False, overwrite=False):
        seen.update(cfg=cfg, overwrite=overwrite)
        return "board"

    monkeypatch.setattr(pipeline, "run_select", fake_run_select)
    model, tok = load_model(tiny_dirs["llama"], device="cpu")
    run = tmp_path / "run"
    job = {"task": {"path": "pubmedqa"}, "candidates": ["smollm2-135m"], "run": {"run_dir": str(run)}}
    assert damoc.select(job, candidates=[(model, tok), "smollm2-135m"], overwrite=True) == "board"
    first = Path(seen["cfg"].candidates[0])
    assert first.parent == tmp_path / "run.inputs" and (first / "config.json").is_file()
    assert seen["cfg"].candidates[1] == "smollm2-135m" and seen["overwrite"] is True
