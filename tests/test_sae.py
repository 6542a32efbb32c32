"""TopK SAE: exact sparsity, unit-norm decoder, reconstruction better than a random projection."""

import pytest
import torch

from damoc.curate.activations import residual_activations, resolve_layer
from damoc.curate.curation import idf_weights, mean_signature, similarity_scores, top_m
from damoc.curate.sae import SAEConfig, TopKSAE
from damoc.curate.train_sae import SAETrainConfig, fraction_unexplained, sae_fvu, train_sae
from damoc.errors import DamocError
from damoc.io.tasks import load_examples
from damoc.testing import tiny_model, tiny_tokenizer


def test_topk_keeps_exactly_k_latents():
    sae = TopKSAE(SAEConfig(d_model=8, expansion=4, k=5, seed=0))
    x = torch.randn(20, 8)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive: ReLU keeps all k
        z = sae.encode(x)
        assert ((z != 0).sum(1) == 5).all()
        top = sae.pre_acts(x).topk(5, dim=-1).indices.sort(1).values
        assert torch.equal((z != 0).nonzero()[:, 1].view(20, 5), top)
        sae.b_enc.fill_(-100.0)  # all negative: nothing fires, never more than k
        assert (sae.encode(x) != 0).sum() == 0


def test_k_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="k must be"):
        TopKSAE(SAEConfig(d_model=4, expansion=2, k=9))


def _acts():
    model, tok = tiny_model("llama", 4, seed=1), tiny_tokenizer()
    texts = [e.text() for e in load_examples("pubmedqa")[:16]] + [
        e.text() for e in load_examples("finance")[:16]
    ]
    acts = residual_activations(model, tok, texts, None, max_length=48)
    return torch.cat(acts[::2]), torch.cat(acts[1::2])


def test_sae_beats_random_projection_on_held_out_activations():
    train, held = _acts()
    cfg = SAETrainConfig(expansion=4, k=8, steps=60, batch_size=128, lr=5e-3)
    sae, stats = train_sae(train, cfg)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.cfg.width), atol=1e-4)
    # Baseline of the same size: a random TopK encoder (untrained SAE) whose decoder and bias are the
    # least-squares best fit on the training activations.
    rnd = TopKSAE(SAEConfig(d_model=train.shape[1], expansion=4, k=8, seed=7))
    with torch.no_grad():
        z = rnd.encode(train)
        z1 = torch.cat([z, torch.ones(len(z), 1)], 1)
        sol = torch.linalg.lstsq(z1, train).solution
        z_held = torch.cat([rnd.encode(held), torch.ones(len(held), 1)], 1)
        baseline = fraction_unexplained(held, z_held @ sol)
    ours = sae_fvu(sae, held)
    assert ours < 0.6 * baseline, (ours, baseline)
    assert stats.fvu < 0.5 and 0.0 <= stats.dead_fraction < 1.0


def test_activations_shape_and_layer_checks():
    model, tok = tiny_model("qwen2", 4, seed=0), tiny_tokenizer()
    acts = residual_activations(model, tok, ["abcdef", "xy"], layer=1, max_length=16, drop_first=1)
    assert [a.shape for a in acts] == [torch.Size([5, 32]), torch.Size([1, 32])]
    assert resolve_layer(model, None) == 2 and resolve_layer(model, -1) == 3
    with pytest.raises(DamocError, match="out of range"):
        resolve_layer(model, 4)


def test_signature_math_known_answers():
    codes = torch.tensor([[0.0, 2.0, 0.0], [0.0, 4.0, 1.0]])
    assert torch.equal(mean_signature(codes), torch.tensor([0.0, 3.0, 0.5]))
    sigs = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    w = idf_weights(sigs)  # latent 0 fires everywhere, latent 1 in half, latent 2 never
    assert w[0] < w[1] < w[2]
    pool = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    seeds = torch.tensor([[2.0, 0.0]])
    s = similarity_scores(pool, seeds)
    assert torch.allclose(s, torch.tensor([1.0, 0.0, 2**-0.5]))
    assert top_m(torch.tensor([0.5, 0.9, 0.9, 0.1]), 3) == [1, 2, 0]
