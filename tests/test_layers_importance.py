"""Layer importance: the math on tensors, and known answers on tiny models of every architecture."""

import pytest
import torch

from damoc.errors import DamocError
from damoc.model.importance import (
    angular_distances,
    best_block,
    block_influence,
    calibration_batches,
    choose_layers,
    layer_scores,
    pick_lowest,
    score_batches,
)
from damoc.testing import TINY_ARCHS, tiny_model, tiny_tokenizer

TEXTS = [f"Patient {i} was given drug {i % 3} and improved after {i + 2} days of care." for i in range(6)]


def make_identity(model, layer: int) -> None:
    """Zero the output projections of ``layer``: it then adds nothing to the residual stream."""
    blk = model.model.layers[layer]
    with torch.no_grad():
        blk.self_attn.o_proj.weight.zero_()
        blk.mlp.down_proj.weight.zero_()


def test_block_influence_math():
    h0 = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5)
    bi = block_influence([h0, h0.clone(), -h0, torch.randn(2, 5, 8)], mask)
    assert bi[0].item() == pytest.approx(0.0, abs=1e-6)  # unchanged
    assert bi[1].item() == pytest.approx(2.0, abs=1e-6)  # reversed
    # padding is ignored: a different value at masked positions changes nothing
    h1 = h0.clone()
    h1[:, -1] = torch.randn(2, 8)
    mask[:, -1] = 0
    assert block_influence([h0, h1], mask)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_angular_distance_math():
    h = torch.randn(1, 4, 6)
    mask = torch.ones(1, 4)
    d = angular_distances([h, torch.randn(1, 4, 6), h.clone(), -h], mask, 2)
    assert d[0].item() == pytest.approx(0.0, abs=1e-3)  # h_0 == h_2
    assert d[1].item() < 1.0
    assert best_block([0.5, 0.1, 0.05, 0.3], 2, 6, protect_first_last=True) == 2
    assert best_block([0.0, 0.1, 0.2, 0.3], 2, 6, protect_first_last=True) == 1  # start 0 protected


def test_pick_lowest_protects_first_last():
    assert pick_lowest([0.0, 0.5, 0.1, 0.3, 0.0], 2, protected=[0, 4]) == [2, 3]
    with pytest.raises(DamocError, match="only 3 of 5"):
        pick_lowest([0.1] * 5, 4, protected=[0, 4])


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_identity_layer_has_zero_bi_and_goes_first(arch):
    model = tiny_model(arch, n_layers=5, seed=3)
    make_identity(model, 2)
    res = layer_scores(model, tiny_tokenizer(), TEXTS, max_length=32, batch_size=4)
    assert len(res.bi) == 5
    assert res.bi[2] == pytest.approx(0.0, abs=1e-5)
    assert min(b for i, b in enumerate(res.bi) if i != 2) > 1e-3
    assert choose_layers(res, 1) == [2]


def test_angular_block_of_identities_is_picked():
    model = tiny_model("llama", n_layers=6, seed=3)
    make_identity(model, 2)
    make_identity(model, 3)
    res = layer_scores(model, tiny_tokenizer(), TEXTS, metric="angular", block=2, max_length=32)
    assert res.angular[2] == pytest.approx(0.0, abs=1e-3)
    assert choose_layers(res, 2) == [2, 3]


def test_one_forward_per_batch():
    model = tiny_model("qwen2", n_layers=4)
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    batches = calibration_batches(tiny_tokenizer(), TEXTS, 32, 4)
    score_batches(model, batches, "angular", 2)
    h.remove()
    assert len(batches) == 2 and len(calls) == 2


def test_bad_metric_and_block():
    model = tiny_model("llama", n_layers=4)
    with pytest.raises(DamocError, match="unknown layer metric"):
        layer_scores(model, tiny_tokenizer(), TEXTS, metric="cosine")
    with pytest.raises(DamocError, match="block size"):
        layer_scores(model, tiny_tokenizer(), TEXTS, metric="angular", block=4)
