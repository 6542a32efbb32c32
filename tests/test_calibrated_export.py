"""What `damoc quantize` and `damoc prune calibrated` write, read back by plain transformers: compressed-tensors
``pack-quantized`` layers (not dense), the same logits as damoc's dequantized model, smaller on disk, the
source's dtype; 2:4 pruning then 4-bit quantization keeps the 2:4 mask."""

import json

import pytest
import torch

SMALL = ["--samples", "3", "--length", "32", "--batch-size", "2"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def llama(tiny_dirs):
    return tiny_dirs["llama"]


def _size(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix == ".safetensors")


def _logits(model, seed=3):
    ids = torch.randint(4, 250, (2, 20), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(input_ids=ids).logits


def _quantize(run_cli, model, out, *args):
    code, _, err = run_cli("quantize", model, *args, *SMALL, "--out", out)
    assert code == 0, err
    return json.loads((out / "config.json").read_text())


def _quantized_layers(model) -> list[str]:
    from compressed_tensors.quantization import QuantizationStatus

    return [
        name
        for name, mod in model.named_modules()
        if getattr(mod, "quantization_status", None) == QuantizationStatus.COMPRESSED
        and mod.weight_packed.dtype == torch.int32
    ]


def test_symmetric_output_loads_quantized_in_plain_transformers(run_cli, llama, tmp_path):
    from transformers import AutoModelForCausalLM

    args = ["--method", "gptq", "--bits", "4", "--group-size", "16", "--symmetric"]
    cfg = _quantize(run_cli, llama, tmp_path / "ct", *args)
    _quantize(run_cli, llama, tmp_path / "dense", *args, "--format", "dense")
    q = cfg["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "pack-quantized"
    assert q["ignore"] == ["lm_head"]
    (group,) = q["config_groups"].values()
    assert group["targets"] == ["Linear"]
    assert group["weights"] == {
        "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 16, "dynamic": False,
    }  # fmt: skip

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()  # nothing but the directory
    layers = _quantized_layers(model)
    assert len(layers) == 4 * 7 and "lm_head" not in layers  # every linear of the 4 blocks, packed
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").eval()  # damoc's dequantized model
    torch.testing.assert_close(_logits(model), _logits(dense), rtol=1e-5, atol=1e-5)
    from damoc.model.arch import load_model

    ours, _ = load_model(tmp_path / "ct")  # damoc's own tools (eval, select) read it the same way
    torch.testing.assert_close(_logits(ours), _logits(dense), rtol=1e-5, atol=1e-5)
    assert _size(tmp_path / "ct") < 0.6 * _size(tmp_path / "dense")  # the embeddings stay float
    assert not hasattr(model.model.layers[0].mlp.up_proj, "weight_packed")  # decompressed by the forward pass


def test_default_asymmetric_output_with_act_order(run_cli, llama, tmp_path):
    """Asymmetric (zero points packed too): transformers loads it through its documented decompression
    route (``CompressedTensorsConfig(dequantize=True)``); vLLM reads the packed zero points itself."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    args = ["--bits", "4", "--group-size", "16", "--act-order", "--static-groups"]
    cfg = _quantize(run_cli, llama, tmp_path / "ct", *args)
    _quantize(run_cli, llama, tmp_path / "dense", *args, "--format", "dense")
    (group,) = cfg["quantization_config"]["config_groups"].values()
    assert group["weights"]["symmetric"] is False and group["weights"]["actorder"] == "weight"
    with safe_open(str(tmp_path / "ct" / "model.safetensors"), framework="pt") as fh:
        zp = fh.get_tensor("model.layers.0.mlp.down_proj.weight_zero_point")
        packed = fh.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
    assert zp.dtype == packed.dtype == torch.int32 and packed.shape == (32, 64 * 4 // 32)

    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "ct", quantization_config=CompressedTensorsConfig(dequantize=True)
    ).eval()
    assert not _quantized_layers(model)  # dequantized while loading
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").eval()
    for (name, p), (_, d) in zip(model.named_parameters(), dense.named_parameters(), strict=True):
        assert torch.equal(p, d), name  # the very weights damoc dequantized
    torch.testing.assert_close(_logits(model), _logits(dense), rtol=1e-5, atol=1e-5)
    from damoc.model.arch import load_model

    ours, _ = load_model(tmp_path / "ct")  # damoc's own tools (eval, select) read it the same way
    torch.testing.assert_close(_logits(ours), _logits(dense), rtol=1e-5, atol=1e-5)
    assert _size(tmp_path / "ct") < 0.6 * _size(tmp_path / "dense")  # the embeddings stay float


def test_two_four_pruning_then_4_bit_keeps_the_mask(run_cli, llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.model.calibrated.masks import is_valid_nm

    pruned = tmp_path / "p24"
    code, _, err = run_cli("prune", "calibrated", llama, "--pattern", "2:4", *SMALL, "--out", pruned)
    assert code == 0, err
    assert "quantization_config" not in json.loads((pruned / "config.json").read_text())
    dense = AutoModelForCausalLM.from_pretrained(pruned).eval()
    weights = {n: m.weight for n, m in dense.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}
    assert len(weights) == 28 and all(is_valid_nm(w != 0, 2, 4) for w in weights.values())

    both = tmp_path / "p24q4"
    _quantize(run_cli, pruned, both, "--group-size", "16", "--symmetric", "--keep-zeros")
    model = AutoModelForCausalLM.from_pretrained(both).eval()
    assert len(_quantized_layers(model)) == 28
    logits = _logits(model)  # decompresses
    for name, w in weights.items():
        got = model.model.layers.get_submodule(name).weight
        assert bool((got[w == 0] == 0).all()), name  # every pruned weight is still zero
        assert int((got != 0).reshape(-1, 4).sum(-1).max()) <= 2, name
    assert torch.isfinite(logits).all()
    rec = json.loads((both / "damoc_calibrated.json").read_text())
    assert rec["sparsity"] >= 0.5 and rec["storage"].startswith("compressed-tensors pack-quantized")


def test_outputs_keep_the_source_dtype(run_cli, tmp_path):
    from safetensors import safe_open

    from damoc.testing import tiny_model, tiny_tokenizer

    src = tmp_path / "bf16"
    tiny_model("llama", n_layers=2, seed=0).to(torch.bfloat16).save_pretrained(src)
    tiny_tokenizer().save_pretrained(src)
    code, _, err = run_cli("prune", "calibrated", src, "--method", "magnitude", "--out", tmp_path / "p")
    assert code == 0, err
    _quantize(run_cli, src, tmp_path / "q", "--method", "rtn", "--group-size", "16")
    for out in ("p", "q"):
        assert json.loads((tmp_path / out / "config.json").read_text())["dtype"] == "bfloat16"
        with safe_open(str(tmp_path / out / "model.safetensors"), framework="pt") as fh:
            floats = {fh.get_tensor(k).dtype for k in fh.keys() if fh.get_tensor(k).is_floating_point()}
        assert floats == {torch.bfloat16}, out


@pytest.mark.slow
def test_zoo_model_quantized_and_two_four_outputs_load_in_transformers(run_cli, tmp_path):
    """SmolLM2-135M (hidden 576: --group-size 64, since 576 is not a multiple of 128)."""
    from transformers import AutoModelForCausalLM

    from damoc.model.arch import resolve_model

    calib = ["--samples", "8", "--length", "128", "--batch-size", "4"]
    args = ["--group-size", "64", "--symmetric", *calib]
    _quantize(run_cli, "smollm2-135m", tmp_path / "ct", *args)
    _quantize(run_cli, "smollm2-135m", tmp_path / "dense", *args, "--format", "dense")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()
    assert len(_quantized_layers(model)) == 30 * 7
    dense = AutoModelForCausalLM.from_pretrained(tmp_path / "dense").eval()
    torch.testing.assert_close(_logits(model), _logits(dense), rtol=1e-4, atol=1e-4)
    src = resolve_model("smollm2-135m")
    assert _size(tmp_path / "ct") < 0.5 * _size(tmp_path / "dense") == 0.5 * _size(src)

    code, _, err = run_cli(
        "prune", "calibrated", "smollm2-135m", "--pattern", "2:4", *calib, "--out", tmp_path / "p"
    )
    assert code == 0, err
    _quantize(run_cli, tmp_path / "p", tmp_path / "pq", *args, "--keep-zeros")
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "p").eval()
    both = AutoModelForCausalLM.from_pretrained(tmp_path / "pq").eval()
    assert len(_quantized_layers(both)) == 30 * 7
    assert torch.isfinite(_logits(both)).all()  # decompresses
    for name, mod in pruned.model.layers.named_modules():
        if isinstance(mod, torch.nn.Linear):
            got = both.model.layers.get_submodule(name).weight
            assert bool((got[mod.weight == 0] == 0).all()), name
            assert int((got != 0).reshape(-1, 4).sum(-1).max()) <= 2, name
