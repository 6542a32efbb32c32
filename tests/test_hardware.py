"""Device, dtype and precision: bf16 only where the hardware runs it natively, outputs in the source's dtype."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from damoc.errors import DamocError
from damoc.hardware import (
    CPU_FLAGS_ENV,
    bf16_native,
    cpu_bf16_native,
    cpu_flags,
    resolve_device,
    resolve_dtype,
    resolve_precision,
)

EPYC = "fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512vl"  # AVX-512, but no bf16
SAPPHIRE = EPYC + " avx512_bf16 amx_tile amx_bf16 amx_int8"


def test_cpu_flags_read_from_cpuinfo_and_the_override(tmp_path, monkeypatch):
    monkeypatch.delenv(CPU_FLAGS_ENV, raising=False)
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {EPYC}\n\nprocessor\t: 1\n")
    assert "avx512f" in cpu_flags(info) and not cpu_bf16_native(cpu_flags(info))
    info.write_text(f"processor\t: 0\nflags\t\t: {SAPPHIRE}\n")
    assert cpu_bf16_native(cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") == frozenset()
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2,avx512_bf16")
    assert cpu_flags(info) == {"avx2", "avx512_bf16"}  # the override wins over the file
    monkeypatch.setenv(CPU_FLAGS_ENV, "none")
    assert not cpu_bf16_native()


@pytest.mark.parametrize(
    "flags, want",
    [(EPYC, "fp32"), (SAPPHIRE, "bf16"), ("avx2 avx512_bf16", "bf16"), ("amx_bf16", "bf16"), ("", "fp32")],
)
def test_precision_auto_picks_fp32_where_bf16_is_not_native(flags, want):
    fl = frozenset(flags.split())
    assert resolve_precision("auto", "cpu", fl) == want
    assert resolve_precision("fp32", "cpu", frozenset(SAPPHIRE.split())) == "fp32"  # asked for: kept
    assert resolve_precision("bf16", "cpu", fl) == "bf16"


def test_auto_autocast_follows_the_injected_cpu_flags(monkeypatch):
    from damoc.evaluate.scoring import scoring_precision
    from damoc.testing import tiny_model

    model = tiny_model("llama", n_layers=1)
    monkeypatch.setenv(CPU_FLAGS_ENV, EPYC)
    with scoring_precision(model, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE)
    with scoring_precision(model, "auto"):
        assert torch.is_autocast_enabled("cpu")
    assert bf16_native("cpu") and not bf16_native("meta")


def test_devices_that_do_not_exist_are_one_line_errors():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(DamocError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DamocError, match="device 'cuda:3' does not exist: no CUDA device"):
            resolve_device("cuda:3")
    else:
        with pytest.raises(DamocError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_dtype_auto_is_fp32_on_a_cpu_and_the_source_on_an_accelerator(monkeypatch):
    assert resolve_dtype("auto", "cpu", torch.bfloat16) == torch.float32
    assert resolve_dtype("bfloat16", "cpu", torch.float32) == torch.bfloat16
    monkeypatch.setattr("damoc.hardware.bf16_native", lambda device, flags=None: True)
    assert resolve_dtype("auto", "cuda", torch.bfloat16) == torch.bfloat16
    assert resolve_dtype("auto", "cuda", None) == torch.float32
    monkeypatch.setattr("damoc.hardware.bf16_native", lambda device, flags=None: False)
    assert resolve_dtype("auto", "cuda", torch.bfloat16) == torch.float32


# --- settings hashes: records made before `auto` stay valid where it resolves to what they used ----------

# Hashes of these settings computed by the release before `precision: auto` (fp32 was the default, bf16
# set explicitly): the same settings, resolved, must hash the same now.
OLD_UNIT_HASHES = {"fp32": "be5f216439cdd9e5", "bf16": "a5f04be733f64aee"}
OLD_TRUTH_KEYS = {"fp32": "af86361bde631914e0ba79d0", "bf16": "ebf211535c5c438962d39f56"}


def test_resolved_precision_hashes_like_the_release_before_auto():
    from damoc.io.tasks import Example
    from damoc.select.cache import ground_truth_key
    from damoc.select.config import SelectEval, config_hash, settings_payload
    from damoc.select.worker import UnitSpec
    from damoc.train.finetune import FinetuneConfig

    def unit_hash(ev, ft):
        u = UnitSpec(
            candidate="smollm2-135m",
            slug="s",
            method="proxy",
            record_path="r",
            dev_path="d",
            eval=ev,
            finetune=ft,
        )
        return config_hash(settings_payload(u, exclude={"record_path", "device", "threads", "spec_hash"}))

    fp32 = unit_hash(SelectEval(precision="fp32"), FinetuneConfig(precision="fp32"))
    bf16 = unit_hash(SelectEval(precision="bf16"), FinetuneConfig(precision="bf16", lr=1e-3))
    assert {"fp32": fp32, "bf16": bf16} == OLD_UNIT_HASHES
    rows = [Example(id="1", question="q", answer="a")]
    keys = {
        p: ground_truth_key(
            rows,
            rows,
            "smollm2-135m",
            FinetuneConfig(method="full", precision=p),
            SelectEval(precision=p),
            "answer",
        )
        for p in ("fp32", "bf16")
    }
    assert keys == OLD_TRUTH_KEYS


def test_select_resolves_auto_before_anything_is_hashed(monkeypatch):
    from damoc.select.config import SelectConfig, resolve_auto

    cfg = SelectConfig.model_validate(
        {"task": {"path": "pubmedqa"}, "candidates": ["a"], "run": {"device": "cpu"}}
    )
    assert cfg.eval.precision == cfg.proxy.precision == "auto"
    monkeypatch.setenv(CPU_FLAGS_ENV, EPYC)
    plain = resolve_auto(cfg)
    assert (plain.eval.precision, plain.proxy.precision) == ("fp32", "fp32")
    monkeypatch.setenv(CPU_FLAGS_ENV, SAPPHIRE)
    native = resolve_auto(cfg)
    assert (native.eval.precision, native.proxy.precision) == ("bf16", "bf16")
    # the ground truth is the reference: exact unless set otherwise
    assert native.validate_.finetune.precision == native.validate_.eval_precision == "fp32"


def test_examples_do_not_hard_set_bf16():
    def precisions(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("precision", "eval_precision"):
                    yield v
                yield from precisions(v)
        elif isinstance(node, list):
            for v in node:
                yield from precisions(v)

    for path in sorted(Path("examples").glob("*.yaml")):
        assert "bf16" not in set(precisions(yaml.safe_load(path.read_text()))), path


# --- dtype of what is written ------------------------------------------------------------------------


def _dtypes(path: Path) -> set:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as fh:
        return {fh.get_tensor(k).dtype for k in fh.keys()}


def test_dtype_bfloat16_writes_a_bf16_checkpoint_that_reloads(run_cli, tiny_dirs, qa_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.hardware import using
    from damoc.model.arch import load_model

    out = tmp_path / "bf16"
    code, _, err = run_cli(
        "prune", "layers", tiny_dirs["llama"], "--data", qa_file, "--remove", "1", "--merge", "none",
        "--samples", "4", "--length", "32", "--dtype", "bfloat16", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert _dtypes(out) == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    hf = AutoModelForCausalLM.from_pretrained(str(out))
    assert hf.dtype == torch.bfloat16 and hf.config.num_hidden_layers == 3
    with using("cpu", "auto"):
        model, _ = load_model(out)  # auto on a CPU computes in float32, and would save bf16 again
    assert next(model.parameters()).dtype == torch.float32 and model._damoc_save_dtype == torch.bfloat16
    ids = torch.tensor([[5, 9, 14, 30]])
    assert torch.allclose(model(ids).logits, hf(ids).logits.float(), atol=0.05, rtol=0.05)


def test_dtype_auto_saves_in_the_sources_dtype(run_cli, tiny_dirs, qa_file, tmp_path):
    from damoc.model.arch import load_model, save_model

    src = tmp_path / "src_bf16"
    model, tok = load_model(tiny_dirs["qwen2"], dtype="bfloat16")
    save_model(model, src)
    tok.save_pretrained(src)
    out = tmp_path / "pruned"
    code, _, err = run_cli(
        "prune", "layers", src, "--data", qa_file, "--remove", "1", "--merge", "none",
        "--samples", "4", "--length", "32", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert _dtypes(out) == {torch.bfloat16}  # worked in float32 on the CPU, written as the source was
    out32 = tmp_path / "pruned32"
    code, _, err = run_cli(
        "prune", "layers", tiny_dirs["qwen2"], "--data", qa_file, "--remove", "1", "--merge", "none",
        "--samples", "4", "--length", "32", "--out", out32,
    )  # fmt: skip
    assert code == 0, err
    assert _dtypes(out32) == {torch.float32}


def test_a_device_that_does_not_exist_writes_nothing(run_cli, tiny_dirs, qa_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    out = tmp_path / "out"
    code, outp, err = run_cli(
        "prune",
        "layers",
        tiny_dirs["llama"],
        "--data",
        qa_file,
        "--remove",
        "1",
        "--device",
        "cuda:3",
        "--out",
        out,
    )
    assert code == 2 and err.strip().count("\n") == 0 and "cuda:3" in err and "does not exist" in err
    assert not out.exists()
    run = tmp_path / "run"
    code, _, err = run_cli(
        "select", "--task", qa_file, "--candidate", tiny_dirs["llama"], "--device", "cuda:1", "--run-dir", run
    )
    assert code == 2 and err.strip().count("\n") == 0 and "does not exist" in err
    assert not run.exists()
    code, _, err = run_cli("layers", "score", tiny_dirs["llama"], "--data", qa_file, "--device", "gpu")
    assert code == 2 and "unknown device 'gpu'" in err


def test_sequential_offload_path_gives_the_same_compression(tiny_dirs, one_thread):
    """The offload path (trunk on the device, one block at a time) computes what the in-place path does."""
    from damoc.model.arch import load_model
    from damoc.model.calibrated.config import PruneSpec
    from damoc.model.calibrated.pipeline import compress_model

    seqs = torch.randint(4, 250, (4, 24), generator=torch.Generator().manual_seed(0))
    out = []
    for offload in (False, True):
        model, _ = load_model(tiny_dirs["gemma3_text"], device="cpu")
        res = compress_model(
            model, {"domain": seqs}, {"domain": 1.0}, "sparsegpt", PruneSpec(sparsity=0.5), 2, "cpu", offload
        )
        out.append((res, {k: v.clone() for k, v in model.state_dict().items()}))
        assert all(p.device.type == "cpu" for p in model.parameters())
    assert out[0][0].sparsity == pytest.approx(out[1][0].sparsity)
    for k, v in out[0][1].items():
        assert torch.equal(v, out[1][1][k]), k
