"""The Python API: the example in docs/api.md runs as written, on tiny models standing in for the zoo."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ZOO_STAND_INS = {"smollm2-135m": "llama", "gemma3-270m": "gemma3_text", "qwen2.5-coder-0.5b": "qwen2"}


def docs_python() -> str:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Example", 1)[1]
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


def test_docs_example_runs(tiny_zoo, tmp_path, qa_file, monkeypatch, capsys):
    """docs/api.md's code as written, with tiny models for the zoo and a 40-row task for the bundled one."""
    code = docs_python()
    assert code.count('"pubmedqa"') >= 4
    monkeypatch.setenv("DAMOC_CACHE", str(tiny_zoo))
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"pubmedqa"', repr(str(qa_file))), "docs/api.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[0] in ("smollm2-135m", "gemma3-270m")  # the best candidate, then the scores
    assert lines[1].startswith("removed layers [")
    assert re.match(r"sparsity 0\.50 -> runs/api_sparse", lines[2])
    assert (tmp_path / "runs" / "api_sparse" / "config.json").is_file()
    assert (tmp_path / "runs" / "api_demo" / "leaderboard.json").is_file()
    assert lines[3].startswith("4 rows kept; token rate")


def test_in_memory_models_and_one_line_errors(tiny_dirs, qa_file, one_thread, tmp_path):
    import damoc
    from damoc.model.arch import load_model

    model, tok = load_model(tiny_dirs["qwen2"], device="cpu")
    res = damoc.prune_layers(model, qa_file, tokenizer=tok, remove=1, merge="none", calib_samples=4)
    assert res.model is model and model.config.num_hidden_layers == 3 and res.path is None
    q = damoc.quantize(model, tokenizer=tok, method="rtn", bits=4, group_size=16, general="general")
    assert q.report.method == "rtn" and q.model is model
    out = tmp_path / "q4"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = damoc.quantize(model, tokenizer=tok, method="rtn", bits=4, group_size=16, general="general", out=out)
    assert "compressed-tensors" in q.report.storage and q.path == out
    # a copy was packed: the returned model keeps its float weights, the checkpoint reloads dequantized
    after = model.state_dict()
    assert after.keys() == before.keys() and all(after[k].is_floating_point() for k in after)
    reloaded, _ = load_model(out, device="cpu")
    w = "model.layers.0.mlp.down_proj.weight"
    assert torch.allclose(reloaded.state_dict()[w], after[w], atol=1e-6)
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
