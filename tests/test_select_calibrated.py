"""Cross-calibrated compression as an optional model-level stage of `damoc select` (docs/calibrated.md).

Known answers on a tiny model (the stage reaches the target sparsity; α = 0 ignores the domain text;
GPTQ leaves at most 2^bits levels per group), one end-to-end run through the CLI, the settings hash,
and bad input (one line, exit code 2, nothing written).
"""

import json

import pytest
import torch
import yaml

from damoc.select.config import CalibratedSettings
from damoc.testing import tiny_model, tiny_tokenizer

DOMAIN = [
    f"Patients given compound {i} showed lower blood pressure after {i % 7 + 2} weeks in the trial."
    for i in range(40)
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _settings(**kw):
    base = {"samples": 4, "length": 32, "batch_size": 4}
    return CalibratedSettings.model_validate({**base, **kw})


def _block_linears(model):
    from damoc.model.arch import decoder_layers

    for block in decoder_layers(model):
        for name, mod in block.named_modules():
            if isinstance(mod, torch.nn.Linear):
                yield name, mod


def test_stage_reaches_the_target_sparsity_with_both_sources():
    from damoc.select.calibrated_stage import apply_calibrated

    model, tok = tiny_model("llama"), tiny_tokenizer()
    summary = apply_calibrated(model, tok, _settings(method="sparsegpt", prune={"sparsity": 0.5}), DOMAIN)
    assert summary["weights"] == {"general": 0.5, "domain": 0.5}
    assert summary["tokens"] == {"general": 4 * 32, "domain": 4 * 32}
    assert summary["layers"] == 4 * 7  # q, k, v, o, gate, up, down per block
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-6)
    for _, lin in _block_linears(model):
        assert (lin.weight == 0).float().mean().item() == pytest.approx(0.5, abs=1e-6)
    assert 0 < summary["mean_rel_error"] < 1


def test_alpha_one_uses_only_the_domain_and_alpha_zero_ignores_it():
    from damoc.select.calibrated_stage import apply_calibrated

    tok = tiny_tokenizer()
    m1 = tiny_model("llama")
    s1 = apply_calibrated(m1, tok, _settings(method="wanda", alpha=1.0, general=None), DOMAIN)
    assert s1["weights"] == {"domain": 1.0} and set(s1["tokens"]) == {"domain"}
    # α = 0: the domain text has no influence on the result (known answer: general-only calibration)
    a, b = tiny_model("llama"), tiny_model("llama")
    apply_calibrated(a, tok, _settings(method="sparsegpt", alpha=0.0), DOMAIN)
    apply_calibrated(b, tok, _settings(method="sparsegpt", alpha=0.0), [t.upper() for t in DOMAIN])
    for (_, la), (_, lb) in zip(_block_linears(a), _block_linears(b), strict=True):
        assert torch.equal(la.weight, lb.weight)
    # ... while α = 0.5 with a different domain text gives different weights
    c = tiny_model("llama")
    apply_calibrated(c, tok, _settings(method="sparsegpt", alpha=0.5), [t.upper() for t in DOMAIN])
    assert any(
        not torch.equal(la.weight, lc.weight)
        for (_, la), (_, lc) in zip(_block_linears(a), _block_linears(c), strict=True)
    )


def test_gptq_stage_leaves_at_most_2_to_the_bits_levels_per_group():
    from damoc.select.calibrated_stage import apply_calibrated

    model = tiny_model("qwen2")
    s = apply_calibrated(
        model, tiny_tokenizer(), _settings(method="gptq", quant={"bits": 3, "group_size": 16}), DOMAIN
    )
    assert s["family"] == "quantize" and s["bits"] == 3
    for _, lin in _block_linears(model):
        w = lin.weight.detach()
        for g in range(0, w.shape[1], 16):
            for row in w[:, g : g + 16]:
                assert torch.unique(row).numel() <= 2**3


def _task(path, n=36):
    rows = [
        {
            "id": f"t{i}",
            "question": f"Does drug {i} lower blood pressure in group {i % 4}?",
            "context": f"A study of {30 + i} adults found drug {i} changed the blood pressure of group {i % 4}.",
            "answer": f"{['yes', 'no'][i % 2]}, it did for drug {i}.",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_select_runs_the_calibrated_stage_end_to_end(tmp_path, tiny_dirs, run_cli):
    from damoc.select.records import Leaderboard

    task = _task(tmp_path / "task.jsonl")
    job = {
        "job": "select",
        "task": {"path": str(task), "dev_size": 6},
        "candidates": [str(tiny_dirs["llama"])],
        "data": {"filter": "random", "budget": 0.5, "compress_rate": None},
        "model": {
            "layer_fraction": 0.25,
            "calibration_rows": 4,
            "calibration_max_length": 64,
            "calibrated": {"method": "sparsegpt", "prune": {"pattern": "2:4"}, "samples": 4, "length": 32},
        },
        "proxy": {"method": "lora", "max_steps": 1, "batch_size": 4, "max_length": 96},
        "eval": {"dev_rows": 6, "max_length": 96},
        "baselines": False,
        "run": {"run_dir": str(tmp_path / "run"), "threads": 1},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    code, out, err = run_cli("select", path)
    assert code == 0, (out, err)
    board = Leaderboard.model_validate_json((tmp_path / "run" / "leaderboard.json").read_text())
    rec = next(r for r in board.records if r.method == "proxy")
    assert rec.status == "ok", rec.error
    assert rec.n_layers == 3 and rec.compression is not None
    assert rec.compression["method"] == "sparsegpt" and rec.compression["layers"] == 3 * 7
    assert rec.compression["sparsity"] == pytest.approx(0.5, abs=1e-6)  # 2:4 keeps 2 of every 4
    assert rec.compression["weights"] == {"general": 0.5, "domain": 0.5}
    assert "calibrated" in rec.stage_s and rec.score is not None and rec.score > 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "cross-calibrated compression: sparsegpt, pattern 2:4" in report


def test_calibrated_settings_enter_the_proxy_hash_only(qa_file, tmp_path):
    from damoc.io.tasks import load_task
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import DataStage, attach_spec_hashes, plan_units
    from damoc.select.records import DataRecord

    def hashes(calibrated):
        cfg = SelectConfig.model_validate(
            {
                "task": {"path": str(qa_file)},
                "candidates": ["a"],
                "model": {"calibrated": calibrated},
                "validate": {"enabled": True},
            }
        )
        rec = DataRecord(task="t", fingerprint="f", n_train=1, n_dev=1, n_proxy_train=1, config_hash="d")
        stage = DataStage(rec, *(tmp_path / n for n in ("a", "b", "c", "d", "e")))
        units = plan_units(cfg, load_task(qa_file), stage, tmp_path)
        attach_spec_hashes(units, stage)
        return {u.method: u.spec_hash for u in units}

    off, a, b = hashes(None), hashes({"method": "wanda"}), hashes({"method": "wanda", "alpha": 0.7})
    assert len({off["proxy"], a["proxy"], b["proxy"]}) == 3
    assert all(off[m] == a[m] == b[m] for m in ("zero_shot", "few_shot", "full"))


@pytest.mark.parametrize(
    "args, match",
    [
        (["--calibrated", "nosuch"], "unknown calibration method 'nosuch'"),
        (["--calibrated", "sparsegpt", "--calib-sparsity", "1.5"], "sparsity"),
        (["--calibrated", "gptq", "--calib-bits", "5"], "unsupported bits 5"),
        (["--calibrated", "wanda", "--calib-alpha", "1.5"], "alpha"),
        (["--calibrated", "sparsegpt", "--calib-pattern", "4:2"], "pattern N:M needs 0 < N < M"),
        (["--calib-alpha", "0.3"], "--calib-* options need --calibrated"),
    ],
)
def test_bad_calibrated_options(run_cli, tmp_path, tiny_dirs, qa_file, args, match):
    run = tmp_path / "bad_run"
    code, out, err = run_cli("select", "-o", run, "-t", qa_file, "-c", tiny_dirs["llama"], *args)
    assert code == 2, (out, err)
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists()


@pytest.mark.slow
def test_real_model_select_with_calibrated_wanda(tmp_path, run_cli):
    """SmolLM2-135M through `damoc select --calibrated wanda` on bundled PubMedQA rows."""
    from pathlib import Path

    from damoc.select.records import Leaderboard

    if not (Path.home() / ".cache" / "damoc" / "zoo" / "smollm2-135m" / "config.json").is_file():
        pytest.skip("smollm2-135m is not in the zoo cache")
    run = tmp_path / "run"
    code, out, err = run_cli(
        "select", "-t", "pubmedqa", "-c", "smollm2-135m", "-o", run, "--max-rows", "48", "--dev-size", "8",
        "--dev-rows", "8", "--budget", "8", "--no-compress", "--layer-fraction", "0.1", "--max-steps", "1",
        "--no-baselines", "--calibrated", "wanda", "--calib-sparsity", "0.5", "--calib-alpha", "0.5",
    )  # fmt: skip
    assert code == 0, (out, err)
    board = Leaderboard.model_validate_json((run / "leaderboard.json").read_text())
    rec = next(r for r in board.records if r.method == "proxy")
    assert rec.status == "ok", rec.error
    assert rec.n_layers == 27 and rec.compression["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert rec.compression["weights"] == {"general": 0.5, "domain": 0.5}
    assert 0 < rec.score < 10
