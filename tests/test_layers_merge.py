"""Merging removed layers: the per-tensor math, the registry, and known answers on tiny models."""

import pytest
import torch

from damoc.errors import DamocError
from damoc.model.arch import decoder_layers
from damoc.model.importance import calibration_batches
from damoc.model.merge import MERGES, MergeContext, MergeSettings, merge_targets
from damoc.model.merge.base import contiguous_blocks
from damoc.model.merge.linear import (
    capture_mlp,
    capture_targets,
    fit_stats,
    fold_error,
    fold_into_down,
    ridge_solve,
)
from damoc.model.merge.task_vector import dare_drop, merge_tensor, trim_top
from damoc.model.removal import remove_layers, skipping
from damoc.testing import TINY_ARCHS, tiny_model, tiny_tokenizer

TEXTS = [f"Patient {i} received {i % 4} doses of drug X and recovered in {i + 3} days." for i in range(8)]


def _batches(n=8, length=32):
    return calibration_batches(tiny_tokenizer(), TEXTS[:n], length, 4)


def _merge(model, method, removed, **settings):
    ctx = MergeContext(MergeSettings(**settings), _batches())
    return MERGES.get(method)(model, removed, ctx)


# ------------------------------------------------------------------ pure math


def test_registry_lists_the_four_methods():
    assert MERGES.names() == ["none", "magnitude", "dare", "linear"]
    with pytest.raises(DamocError, match="unknown merge method 'lineer'; did you mean 'linear'"):
        MERGES.get("lineer")


def test_trim_top_keeps_largest():
    tau = torch.tensor([0.1, -3.0, 0.5, 2.0])
    assert torch.equal(trim_top(tau, 0.5), torch.tensor([0.0, -3.0, 0.0, 2.0]))
    assert torch.equal(trim_top(tau, 0.0), torch.zeros(4))
    assert torch.equal(trim_top(tau, 1.0), tau)


def test_dare_is_seeded_and_unbiased():
    tau = torch.ones(20000)
    a = dare_drop(tau, 0.3, torch.Generator().manual_seed(1))
    b = dare_drop(tau, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.all((a == 0) | torch.isclose(a, torch.tensor(1 / 0.3)))
    assert a.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(dare_drop(tau, 0.0), torch.zeros_like(tau))


def test_merge_tensor_known_answers():
    base, r1, r2 = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 0.0, 0.0])
    ident = lambda t: t  # noqa: E731
    assert torch.equal(merge_tensor(base, [r1], ident, scale=1.0), r1)  # density 1, λ 1 -> replaced
    assert torch.equal(merge_tensor(base, [r1], ident, scale=0.0), base)
    assert torch.allclose(merge_tensor(base, [r1, r2], ident, 1.0, scale_by_count=True), (r1 + r2) / 3)


def test_merge_targets_and_blocks():
    assert merge_targets(6, [2, 3, 5]) == {2: 1, 3: 1, 5: 4}
    assert merge_targets(4, [0, 1]) == {0: 2, 1: 2}  # nothing kept before: the next kept layer
    assert contiguous_blocks([5, 2, 3, 7]) == [(2, 4), (5, 6), (7, 8)]


def test_ridge_recovers_a_linear_map():
    torch.manual_seed(0)
    m = torch.randn(500, 6)
    a_true = torch.randn(6, 6)
    a, b, c = fit_stats(m, m @ a_true)
    t = ridge_solve(a, b, 1e-9)
    assert torch.allclose(t.float(), a_true, atol=1e-4)
    assert fold_error(a, b, c, t) < 1e-6 * c
    assert fold_error(a, b, c, torch.eye(6)) == pytest.approx(c)
    a, b, c = fit_stats(m, m)  # target already reached: T = I whatever the ridge
    assert torch.allclose(ridge_solve(a, b, 1.0).float(), torch.eye(6), atol=1e-6)


def test_fold_into_down_multiplies_output():
    lin = torch.nn.Linear(5, 4)
    t = torch.randn(4, 4)
    x = torch.randn(3, 5)
    w, b = fold_into_down(lin.weight.data, lin.bias.data, t)
    assert torch.allclose(x @ w.T + b, lin(x) @ t, atol=1e-5)


# ------------------------------------------------------------- known answers on models


def _plain(arch, removed):
    m = tiny_model(arch, 5, seed=4)
    remove_layers(m, removed)
    return m


@pytest.mark.parametrize("method", ["magnitude", "dare"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_density_or_scale_zero_is_plain_removal(arch, method):
    ids = torch.randint(3, 250, (1, 9))
    ref = _plain(arch, [2, 3])(ids).logits
    for kw in ({"density": 0.0, "scale": 1.0}, {"density": 0.5, "scale": 0.0}):
        m = tiny_model(arch, 5, seed=4)
        _merge(m, method, [2, 3], **kw)
        remove_layers(m, [2, 3])
        assert torch.equal(m(ids).logits, ref)


@pytest.mark.parametrize("method", ["magnitude", "dare"])
@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_density_one_scale_one_replaces(arch, method):
    m = tiny_model(arch, 5, seed=4)
    removed_sd = {k: v.clone() for k, v in decoder_layers(m)[2].state_dict().items()}
    info = _merge(m, method, [2], density=1.0, scale=1.0, merge_norms=True)
    assert info.targets == {2: 1}
    kept_sd = decoder_layers(m)[1].state_dict()
    for k, v in removed_sd.items():
        assert torch.allclose(kept_sd[k], v, atol=1e-6), k


def test_norms_skipped_when_asked():
    m = tiny_model("llama", 5, seed=4)
    before = decoder_layers(m)[1].input_layernorm.weight.clone()
    decoder_layers(m)[2].input_layernorm.weight.data.mul_(3.0)
    info = _merge(m, "magnitude", [2], density=1.0, scale=1.0, merge_norms=False)
    assert torch.equal(decoder_layers(m)[1].input_layernorm.weight, before)
    assert info.details["norm_tensors_skipped"] == 2


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_linear_identity_block_gives_identity_map(arch):
    m = tiny_model(arch, 6, seed=4)
    for i in (2, 3):
        with torch.no_grad():
            decoder_layers(m)[i].self_attn.o_proj.weight.zero_()
            decoder_layers(m)[i].mlp.down_proj.weight.zero_()
    before = decoder_layers(m)[1].mlp.down_proj.weight.clone()
    info = _merge(m, "linear", [2, 3], verify=False)
    after = decoder_layers(m)[1].mlp.down_proj.weight
    assert (after - before).norm() / before.norm() < 1e-3
    blk = info.details["blocks"][0]
    assert blk["block"] == [2, 4] and blk["err_plain"] < 1e-6 * blk["tokens"]


def _hidden_error(model, batches, e, target, skip):
    """‖h_e(pruned) − h_e(full)‖² on the calibration tokens, for a model with ``skip`` passed through."""
    with skipping(model, skip):
        got = capture_targets(model, batches, [e])[e]
    return float(((got - target) ** 2).sum())


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_linear_fold_matches_full_hidden_better_than_plain(arch):
    batches = _batches()
    m = tiny_model(arch, 6, seed=4)
    target = capture_targets(m, batches, [4])[4]
    plain = _hidden_error(m, batches, 4, target, [2, 3])
    info = _merge(m, "linear", [2, 3], verify=False, refine_steps=60, refine_lr=3e-2)
    folded = _hidden_error(m, batches, 4, target, [2, 3])
    assert info.details["blocks"][0]["folded"]
    assert folded < 0.9 * plain, (folded, plain)


def test_linear_never_worse_than_plain_on_calibration():
    from damoc.model.merge.linear import calibration_loss

    batches = _batches()
    m = tiny_model("qwen2", 6, seed=5)
    with skipping(m, [2, 3]):
        plain = calibration_loss(m, batches)
    info = _merge(m, "linear", [2, 3], verify=True)
    with skipping(m, [2, 3]):
        after = calibration_loss(m, batches)
    assert after <= plain + 1e-6
    assert info.details["calib_loss_plain"] == pytest.approx(plain, rel=1e-5)
    assert info.details["fold_kept"] == (info.details["calib_loss_fold"] < plain)


def test_linear_fit_on_pruned_sees_lower_blocks_removed():
    batches = _batches()
    m = tiny_model("llama", 7, seed=4)
    info = _merge(m, "linear", [1, 2, 4], verify=False, fit_on_pruned=True)
    assert [b["block"] for b in info.details["blocks"]] == [[1, 3], [4, 5]]
    m2 = tiny_model("llama", 7, seed=4)
    info2 = _merge(m2, "linear", [1, 2, 4], verify=False, fit_on_pruned=False)
    assert [b["block"] for b in info2.details["blocks"]] == [[4, 5], [1, 3]]  # top-down
    # captures differ for the upper block: layer 3 sees its input without layers 1-2 in the first case
    with skipping(m, [1, 2]):
        r1 = capture_mlp(m, batches, 3)["r"]
    r2 = capture_mlp(m2, batches, 3)["r"]
    assert not torch.allclose(r1, r2)


def test_linear_needs_calibration_text():
    with pytest.raises(DamocError, match="calibration text"):
        MERGES.get("linear")(tiny_model("llama", 4), [1], MergeContext(MergeSettings(), []))


def test_token_weights():
    from damoc.model.merge.linear import token_weights

    h = torch.ones(4, 3)
    h[0] *= 10.0
    w = token_weights(h, "inverse_norm")
    assert w.mean().item() == pytest.approx(1.0) and w[0] == pytest.approx(w[1] / 100)
    assert torch.equal(token_weights(h, "uniform"), torch.ones(4))
    with pytest.raises(DamocError, match="token weighting"):
        token_weights(h, "cosine")


@pytest.mark.parametrize("arch", ["qwen3", "gemma3_text"])
def test_linear_weighted_fit_still_beats_plain(arch):
    m = tiny_model(arch, 6, seed=4)
    info = _merge(
        m, "linear", [2, 3], verify=False, token_weight="inverse_norm", refine_steps=40, refine_lr=3e-2
    )
    blk = info.details["blocks"][0]
    assert blk["folded"] and blk["err_fold"] < blk["err_plain"]
