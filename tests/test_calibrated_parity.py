"""Parity with llm-compressor (optional reference, installed in a separate venv: .venv-llmc).

Skipped unless ``.venv-llmc/bin/python`` (or $DAMOC_LLMC_PYTHON) can import llmcompressor; slow
(the reference's imports alone take ~30 s). The always-on reference test is the textbook OBS one in
test_calibrated.py.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LLMC = Path(os.environ.get("DAMOC_LLMC_PYTHON", ROOT / ".venv-llmc" / "bin" / "python"))


def _has_llmc() -> bool:
    if not LLMC.exists():
        return False
    res = subprocess.run([str(LLMC), "-c", "import llmcompressor"], capture_output=True)
    return res.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, extra",
    [
        ("sparsegpt", []),
        ("wanda", []),
        ("sparsegpt", ["--pattern", "2:4"]),
        ("wanda", ["--pattern", "2:4"]),
        ("gptq", ["--bits", "4", "--group-size", "16"]),
    ],
)
def test_matches_llmcompressor_perplexity_within_1_percent(tmp_path, method, extra):
    if not _has_llmc():
        pytest.skip("llmcompressor reference venv not installed")
    from damoc.evaluate.perplexity import pack_sequences, sequence_perplexity
    from damoc.model.arch import load_model
    from damoc.model.calibrated import PruneSpec, QuantSpec
    from damoc.model.calibrated.general_text import load_source_texts
    from damoc.model.calibrated.pipeline import compress_model
    from damoc.testing import save_tiny_model

    mdir = save_tiny_model(tmp_path / "m", "llama", n_layers=2, seed=0)
    model, tok = load_model(mdir)
    calib = pack_sequences(tok, load_source_texts("general", "calib"), 16, 64)
    ev = pack_sequences(tok, load_source_texts("general", "dev"), 8, 64)
    torch.save(calib, tmp_path / "calib.pt")
    torch.save({"general": ev}, tmp_path / "eval.pt")
    out = tmp_path / "ref.json"
    script = ROOT / "benchmarks" / "llmc_reference.py"
    cmd = [str(LLMC), str(script), str(mdir), str(tmp_path / "calib.pt"), str(tmp_path / "eval.pt"), str(out)]
    subprocess.run([*cmd, "--method", method, *extra], check=True, capture_output=True)
    ref = json.loads(out.read_text())
    if method == "gptq":  # llm-compressor takes group scale/zero from the original weights: static groups
        spec = QuantSpec(bits=4, group_size=16, static_groups=True)
    else:
        spec = PruneSpec(pattern=extra[1] if extra else None, sparsity=None if extra else 0.5)
    compress_model(model, {"general": calib}, {"general": 1.0}, method, spec, batch_size=4)
    ours = sequence_perplexity(model, ev).perplexity
    assert ours == pytest.approx(ref["perplexity"]["general"], rel=0.01)
