"""Cross-calibration math and pipeline: known answers on synthetic tensors and tiny models."""

import json

import pytest
import torch

from damoc.model.calibrated import METHODS, PruneSpec, QuantSpec
from damoc.model.calibrated.hessian import (
    HessianStats,
    activation_norms,
    mix_hessians,
    reconstruction_error,
    source_weights,
)
from damoc.model.calibrated.masks import is_valid_nm, sparsity_of
from damoc.model.calibrated.pipeline import compress_model
from damoc.model.calibrated.quant import minmax_params
from damoc.model.calibrated.reference import gptq_reference, sparsegpt_reference
from damoc.testing import TINY_ARCHS, tiny_model

PRUNERS = ["magnitude", "wanda", "sparsegpt"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(seed=0, n_in=64, n_out=24, n_tok=512):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n_in, n_in, generator=g) * 0.4
    x = torch.randn(n_tok, n_in, generator=g) @ mix + torch.randn(n_in, generator=g) * 2
    stats = HessianStats.zeros(n_in)
    stats.add(x)
    return torch.randn(n_out, n_in, generator=g), stats.hessian(), x


def test_hessian_is_2_over_n_sum_xxt_and_mix_weights_each_source_by_its_own_count():
    x = torch.randn(10, 4)
    s = HessianStats.zeros(4)
    s.add(x[:6])
    s.add(x[6:].unsqueeze(0))  # any leading shape
    assert s.n_tokens == 10
    torch.testing.assert_close(s.hessian(), 2 * x.T @ x / 10)
    d = HessianStats.zeros(4)
    d.add(torch.cat([x, x]))  # twice the tokens, same distribution: same H
    torch.testing.assert_close(d.hessian(), s.hessian())
    y = HessianStats.zeros(4)
    y.add(torch.randn(3, 4))
    st = {"general": s, "domain": y}
    assert torch.equal(mix_hessians(st, source_weights(0.0, True, True)), s.hessian())
    assert torch.equal(mix_hessians(st, source_weights(1.0, True, True)), y.hessian())
    torch.testing.assert_close(
        mix_hessians(st, {"general": 0.7, "domain": 0.3}), 0.7 * s.hessian() + 0.3 * y.hessian()
    )
    assert source_weights(0.3, False, True) == {"domain": 1.0}


def test_activation_norm_is_column_norm_of_x_up_to_scale():
    x = torch.randn(50, 6)
    s = HessianStats.zeros(6)
    s.add(x)
    torch.testing.assert_close(activation_norms(s.hessian()), x.norm(dim=0) * (2 / 50) ** 0.5)


def test_wanda_known_answer_compares_within_rows():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    h = torch.diag(torch.tensor([16.0, 4.0, 1.0, 1.0]))  # norms 4, 2, 1, 1
    # scores row0: 4 4 3 4 -> drop col 2 and one of the 4s? use sparsity 0.25 -> drop the single lowest
    r = METHODS.get("wanda")(w, h, PruneSpec(sparsity=0.25))
    assert r.mask.tolist() == [[True, True, False, True], [True, True, True, False]]
    m = METHODS.get("magnitude")(w, h, PruneSpec(sparsity=0.25))  # whole layer: drops both 1.0s
    assert m.mask.tolist() == [[False, True, True, True], [True, True, True, False]]


@pytest.mark.parametrize("method", PRUNERS)
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.75])
def test_achieved_sparsity_equals_target(method, sparsity):
    w, h, _ = _layer(n_in=256)  # two SparseGPT blocks of 128
    r = METHODS.get(method)(w, h, PruneSpec(sparsity=sparsity))
    assert sparsity_of(r.weight) == pytest.approx(sparsity, abs=1 / r.weight.shape[1])
    assert torch.equal(r.weight != 0, r.mask)


@pytest.mark.parametrize("method", PRUNERS)
def test_2_4_masks_are_valid(method):
    w, h, _ = _layer()
    r = METHODS.get(method)(w, h, PruneSpec(pattern="2:4"))
    assert is_valid_nm(r.mask, 2, 4)
    assert is_valid_nm(r.weight != 0, 2, 4)
    assert not is_valid_nm(torch.ones(2, 8, dtype=torch.bool), 2, 4)


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(pattern):
    w, h, x = _layer(seed=3, n_in=256)
    spec = PruneSpec(sparsity=None if pattern else 0.5, pattern=pattern)
    err = {m: reconstruction_error(w, METHODS.get(m)(w, h, spec).weight, h) for m in PRUNERS}
    assert err["sparsegpt"] < 0.9 * min(err["wanda"], err["magnitude"])
    # the Hessian form equals ‖WX − ŴX‖² up to N/2
    wh = METHODS.get("sparsegpt")(w, h, spec).weight
    direct = float(((x @ (w - wh).T) ** 2).sum())
    assert err["sparsegpt"] * x.shape[0] / 2 == pytest.approx(direct, rel=1e-3)


@pytest.mark.parametrize("bits", [4, 3])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("static_groups", [False, True])
def test_gptq_reconstructs_better_than_round_to_nearest(bits, act_order, static_groups):
    w, h, _ = _layer(seed=5, n_in=256)
    spec = QuantSpec(bits=bits, group_size=128, act_order=act_order, static_groups=static_groups)
    g = METHODS.get("gptq")(w, h, spec)
    r = METHODS.get("rtn")(w, h, spec)
    assert reconstruction_error(w, g.weight, h) < 0.8 * reconstruction_error(w, r.weight, h)
    assert g.quant.codes.max() <= 2**bits - 1
    torch.testing.assert_close(g.quant.dequantize(), g.weight)
    # at most 2**bits distinct values per row and group
    for p in (g, r):
        vals = p.weight[:, p.quant.g_idx == 0]
        assert max(len(torch.unique(row)) for row in vals) <= 2**bits


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_static_groups_take_the_round_to_nearest_parameters(act_order):
    """Static groups: scale/zero of each original column group from the original weights, i.e. RTN's."""
    w, h, _ = _layer(seed=6, n_in=96)
    spec = QuantSpec(bits=4, group_size=32, act_order=act_order, static_groups=True)
    g = METHODS.get("gptq")(w, h, spec).quant
    r = METHODS.get("rtn")(w, h, spec).quant
    assert torch.equal(g.scales, r.scales) and torch.equal(g.zeros, r.zeros)
    assert torch.equal(g.g_idx, r.g_idx)  # groups of original columns, whatever the sweep order
    dynamic = METHODS.get("gptq")(w, h, spec.model_copy(update={"static_groups": False})).quant
    assert not torch.equal(dynamic.scales, r.scales)  # the test can fail


@pytest.mark.parametrize(
    "spec",
    [
        PruneSpec(sparsity=0.5, block_size=16),
        PruneSpec(pattern="2:4", block_size=16),
        PruneSpec(sparsity=0.7),
    ],
)
def test_sparsegpt_matches_textbook_obs_reference(spec):
    w, h, _ = _layer(seed=7, n_in=48, n_out=12)
    ours = METHODS.get("sparsegpt")(w, h, spec).weight
    ref = sparsegpt_reference(w, h, spec)
    assert torch.equal(ours == 0, ref == 0)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_matches_textbook_obs_reference(symmetric):
    w, h, _ = _layer(seed=8, n_in=48, n_out=12)
    spec = QuantSpec(bits=3, group_size=16, block_size=16, symmetric=symmetric)
    torch.testing.assert_close(
        METHODS.get("gptq")(w, h, spec).weight, gptq_reference(w, h, spec), atol=1e-4, rtol=0
    )


def test_symmetric_minmax_has_the_middle_zero_point_and_the_absmax_range():
    x = torch.tensor([[-3.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.2, 2.0, 1.0]])
    scale, zero = minmax_params(x, 4, symmetric=True)
    assert torch.equal(zero[:, 0], torch.tensor([8.0, 8.0, 8.0]))
    torch.testing.assert_close(scale[:, 0], torch.tensor([6.0, 2.0, 4.0]) / 15)  # 2·max|x| / (2^b - 1)
    a_scale, a_zero = minmax_params(x, 4)
    torch.testing.assert_close(a_scale[0, 0], torch.tensor(4.0 / 15))  # asymmetric: [min, max] only
    assert float(a_zero[0, 0]) == round(3.0 / (4.0 / 15))


@pytest.mark.parametrize("method", ["gptq", "rtn"])
@pytest.mark.parametrize("act_order", [False, True])
def test_keep_zeros_quantizes_a_pruned_layer_without_filling_its_mask(method, act_order):
    w, h, _ = _layer(seed=9, n_in=64)
    pruned = METHODS.get("sparsegpt")(w, h, PruneSpec(pattern="2:4")).weight
    spec = QuantSpec(bits=4, group_size=32, act_order=act_order, static_groups=True, keep_zeros=True)
    q = METHODS.get(method)(pruned, h, spec)
    assert bool((q.weight[pruned == 0] == 0).all())  # the pruned positions stay zero: still 2:4
    assert int((q.weight != 0).reshape(-1, 4).sum(-1).max()) <= 2  # at most 2 of every 4
    torch.testing.assert_close(q.quant.dequantize(), q.weight)
    if method == "gptq":  # without it, GPTQ's error feedback fills some pruned positions in
        filled = METHODS.get(method)(pruned, h, spec.model_copy(update={"keep_zeros": False})).weight
        assert int((filled[pruned == 0] != 0).sum()) > 0
        assert int((filled != 0).reshape(-1, 4).sum(-1).max()) > 2  # no longer 2:4


# ---------------------------------------------------------------- pipeline on tiny models


def test_diagonal_statistics_equal_the_diagonal_of_the_full_hessian():
    x = torch.randn(40, 5)
    full, diag = HessianStats.zeros(5), HessianStats.zeros(5, diagonal=True)
    full.add(x[:25])
    full.add(x[25:])
    diag.add(x[:25])
    diag.add(x[25:])
    assert diag.diagonal and diag.sum_xxt.shape == (5,)
    torch.testing.assert_close(diag.hessian(), torch.diagonal(full.hessian()))
    torch.testing.assert_close(activation_norms(diag.hessian()), activation_norms(full.hessian()))
    w = torch.randn(6, 5)
    assert torch.equal(
        METHODS.get("wanda")(w, diag.hessian(), PruneSpec(sparsity=0.4)).mask,
        METHODS.get("wanda")(w, full.hessian(), PruneSpec(sparsity=0.4)).mask,
    )


def test_wanda_in_the_pipeline_gathers_only_the_diagonal_and_masks_as_with_the_full_h(monkeypatch):
    wanda = METHODS.get("wanda")
    calib = {"general": _windows(1), "domain": _windows(2)}
    weights = source_weights(0.5, True, True)

    def run():
        m = tiny_model("llama", n_layers=2, seed=0)
        res = compress_model(m, calib, weights, "wanda", PruneSpec(sparsity=0.5), batch_size=4)
        return _masks(m), res

    fast, res_fast = run()
    assert all(s.rel_error is None for s in res_fast.layers)  # no full H, so no error under it
    monkeypatch.setattr(wanda, "statistic", "full")
    slow, res_slow = run()
    assert all(s.rel_error is not None for s in res_slow.layers)
    assert all(torch.equal(fast[k], slow[k]) for k in slow)


def _windows(seed, n=6, length=24):
    return torch.randint(4, 260, (n, length), generator=torch.Generator().manual_seed(seed))


def _masks(model):
    return {n: (p != 0) for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n}


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_alpha_0_gives_the_general_only_mask_and_alpha_1_the_domain_only_mask(method):
    gen, dom = _windows(1), _windows(2)
    spec = PruneSpec(sparsity=0.5)

    def run(calib, weights):
        m = tiny_model("llama", n_layers=2, seed=0)
        compress_model(m, calib, weights, method, spec, batch_size=4)
        return _masks(m)

    gen_only = run({"general": gen}, {"general": 1.0})
    dom_only = run({"domain": dom}, {"domain": 1.0})
    both = {"general": gen, "domain": dom}
    a0 = run(both, source_weights(0.0, True, True))
    a1 = run(both, source_weights(1.0, True, True))
    half = run(both, source_weights(0.5, True, True))
    assert all(torch.equal(a0[k], gen_only[k]) for k in gen_only)
    assert all(torch.equal(a1[k], dom_only[k]) for k in dom_only)
    assert any(not torch.equal(half[k], gen_only[k]) for k in gen_only)  # the test can fail
    assert any(not torch.equal(gen_only[k], dom_only[k]) for k in gen_only)


def _record_method():
    """A pass-through method that records the Hessian each layer received."""
    seen = {}
    calls = []

    def record(w, h, spec):
        from damoc.model.calibrated.methods import LayerResult

        calls.append(h.clone())
        return LayerResult(weight=w * 0.5)  # a visible change, so later blocks see compressed inputs

    return record, calls, seen


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_block_inputs_come_from_the_compressed_previous_blocks(arch):
    from damoc.model.calibrated.methods import METHODS as REG

    fn, calls, _ = _record_method()
    name = f"test-record-{arch}"
    REG.register(name, family="prune")(fn)
    try:
        model = tiny_model(arch, n_layers=3, seed=0)
        seqs = _windows(3, n=4, length=20)
        compress_model(model, {"general": seqs}, {"general": 1.0}, name, None, batch_size=2)
    finally:
        REG._entries.pop(name)
    # Now `model` is the compressed model: the Gram of the last block's first linear, measured directly,
    # must equal the Hessian the method was given for it (q_proj of block 2 is call 7 * 2 = 14).
    lin = model.model.layers[2].self_attn.q_proj
    grams = []
    hook = lin.register_forward_hook(lambda m, i, o: grams.append(i[0].reshape(-1, i[0].shape[-1])))
    with torch.no_grad():
        for b in range(0, 4, 2):
            model(input_ids=seqs[b : b + 2], use_cache=False)
    hook.remove()
    x = torch.cat(grams)
    n_lin = len([m for m in model.model.layers[0].modules() if isinstance(m, torch.nn.Linear)])
    torch.testing.assert_close(calls[2 * n_lin], 2 * x.T @ x / x.shape[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_every_arch_compresses_and_reloads_with_the_same_logits(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    from damoc.model.calibrated.checkpoint import save_checkpoint
    from damoc.testing import tiny_tokenizer

    model = tiny_model(arch, n_layers=2, seed=0)
    res = compress_model(
        model,
        {"general": _windows(4), "domain": _windows(5)},
        {"general": 0.5, "domain": 0.5},
        "sparsegpt",
        PruneSpec(pattern="2:4"),
        batch_size=3,
    )
    assert all(s.sparsity == pytest.approx(0.5) for s in res.layers)
    assert all(is_valid_nm(p != 0, 2, 4) for p in _masks(model).values())
    save_checkpoint(model, tiny_tokenizer(), tmp_path, {"ok": True})
    again = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = _windows(6, n=2, length=16)
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize(
    "symmetric, group",
    [(False, 16), (True, 16), (False, 128), (True, -1)],  # 128, -1: a scale per row
)
def test_compressed_checkpoint_stores_exactly_the_payloads(tmp_path, symmetric, group):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, CompressedTensorsConfig

    from damoc.model.calibrated.checkpoint import save_checkpoint
    from damoc.testing import tiny_tokenizer

    model = tiny_model("qwen2", n_layers=2, seed=0)
    spec = QuantSpec(bits=3, group_size=group, symmetric=symmetric)
    res = compress_model(model, {"general": _windows(4)}, {"general": 1.0}, "gptq", spec)
    ids = _windows(6, n=2, length=16)
    with torch.no_grad():
        want = model(input_ids=ids).logits
    save_checkpoint(model, tiny_tokenizer(), tmp_path, {"ok": True}, res.payloads, spec)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert fh.get_tensor("model.layers.0.mlp.down_proj.weight_packed").dtype == torch.int32
    assert not any(k.endswith("proj.weight") for k in keys)  # every linear of the blocks is packed
    assert any(k.endswith("weight_zero_point") for k in keys) == (not symmetric)
    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["model.safetensors"]  # no side file
    groups = json.loads((tmp_path / "config.json").read_text())["quantization_config"]["config_groups"]
    strategies = sorted(g["weights"]["strategy"] for g in groups.values())
    assert strategies == ["group" if group == 16 else "channel"]
    # decompressed on load (transformers' documented route), the weights are the payloads' exactly
    again = AutoModelForCausalLM.from_pretrained(
        tmp_path, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    ).eval()
    params = dict(again.named_parameters())
    for name, p in res.payloads.items():
        assert torch.equal(p.dequantize(), params[f"{name}.weight"])
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, want)


def test_every_quantized_layer_must_fit_the_format():
    from damoc.errors import DamocError
    from damoc.model.calibrated.export import check_exportable

    model = tiny_model("llama", n_layers=1, seed=0, hidden=48)  # 48 and 96 inputs
    check_exportable(model, QuantSpec(group_size=16))
    check_exportable(model, QuantSpec(group_size=128))  # a group wider than a row: a scale per row
    with pytest.raises(DamocError, match=r"48 inputs, not a multiple of the group size 32.*--group-size 16"):
        check_exportable(model, QuantSpec(group_size=32))
    narrow = tiny_model("llama", n_layers=1, seed=0, hidden=32)  # 32 inputs (a scale per row), 64 (groups)
    with pytest.raises(DamocError, match=r"q_proj has fewer inputs than the group size 64.*--group-size 32"):
        check_exportable(narrow, QuantSpec(group_size=64))
    with pytest.raises(DamocError, match="--static-groups"):
        check_exportable(model, QuantSpec(group_size=16, act_order=True))
    check_exportable(model, QuantSpec(group_size=16, act_order=True, static_groups=True))


class _WordTok:
    """A whitespace tokenizer: ids are word lengths + 10; optionally puts BOS (id 2) first, like Gemma."""

    eos_token_id = 1

    def __init__(self, bos: bool):
        self.bos_token_id = 2
        self.bos = bos

    def __call__(self, text, add_special_tokens=True):
        ids = [10 + len(w) for w in text.split()]
        return {"input_ids": ([2] if self.bos and add_special_tokens else []) + ids}


@pytest.mark.parametrize("bos", [False, True])
def test_packed_windows_start_with_bos_only_when_the_tokenizer_adds_it(bos):
    from damoc.evaluate.perplexity import leading_bos, pack_sequences

    texts = [" ".join("w" * (1 + (i + j) % 5) for j in range(9)) for i in range(6)]
    seqs = pack_sequences(_WordTok(bos), texts, n=4, length=8)
    assert seqs.shape == (4, 8)
    assert leading_bos(_WordTok(bos)) == ([2] if bos else [])
    assert bool((seqs[:, 0] == 2).all()) is bos
    assert int((seqs == 2).sum()) == (4 if bos else 0)  # BOS only in front, never inside the stream
    body = seqs[:, 1:] if bos else seqs
    assert int((body == 1).sum()) >= 1  # EOS still joins the texts
