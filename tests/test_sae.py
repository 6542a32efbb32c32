"""TopK SAE: exact sparsity, unit-norm decoder, reconstruction better than a random projection."""

from pathlib import Path

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


# ---------------------------------------------------------------- training step


def test_topk_grads_equal_autograd_of_the_dense_form():
    from damoc.curate.train_sae import topk_grads

    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_model=12, expansion=4, k=5, seed=3))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_(0, 0.2)
    x = torch.randn(40, 12)  # input_scale is 1: x is already in the scaled space
    x_hat, _ = sae(x)
    loss = (x_hat - x).pow(2).sum(1).mean() / 12
    loss.backward()
    g = topk_grads(
        sae.W_enc.detach().t().contiguous(), sae.b_enc.detach(), sae.W_dec.detach(), sae.b_dec.detach(), x, 5
    )
    assert g.loss == pytest.approx(loss.item(), rel=1e-6)
    for ours, ref in (
        (g.enc_rows.t(), sae.W_enc.grad),
        (g.b_enc, sae.b_enc.grad),
        (g.W_dec, sae.W_dec.grad),
        (g.b_dec, sae.b_dec.grad),
    ):
        assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-5)


def test_row_signatures_are_mean_latents_per_row():
    from damoc.curate.curation import row_signatures

    sae = TopKSAE(SAEConfig(d_model=6, expansion=3, k=4, seed=0))
    acts = [torch.randn(5, 6), torch.randn(1, 6), torch.randn(9, 6)]
    with torch.no_grad():
        ref = torch.stack([mean_signature(sae.encode(a)) for a in acts])
    assert torch.allclose(row_signatures(sae, acts, chunk=4), ref, atol=1e-6)


# ---------------------------------------------------------------- saving and loading

SAE_LENS = Path(__file__).resolve().parent / "data" / "sae_lens"


def _trained_sae():
    train, _ = _acts()
    return train_sae(train, SAETrainConfig(expansion=2, k=4, steps=10, batch_size=64, lr=5e-3))[0], train


def test_saved_sae_reloads_with_identical_latents(tmp_path):
    from damoc.curate.sae_io import load_sae, save_sae

    sae, x = _trained_sae()
    assert float(sae.input_scale) != 1.0  # the scale travels with the weights
    save_sae(sae, tmp_path / "sae", info={"model": "tiny", "layer": 2})
    loaded = load_sae(tmp_path / "sae")
    assert loaded.format == "damoc" and loaded.layer == 2 and loaded.info["model"] == "tiny"
    with torch.no_grad():
        assert torch.equal(loaded.sae.encode(x), sae.encode(x))
        assert torch.equal(loaded.sae(x)[0], sae(x)[0])
    assert loaded.sae.cfg == sae.cfg
    with pytest.raises(DamocError, match="not empty"):
        save_sae(sae, tmp_path / "sae")


@pytest.mark.parametrize("name", ["topk", "topk_rescaled", "standard", "jumprelu"])
def test_sae_lens_layout_loads_and_encodes_like_sae_lens(name):
    from safetensors.torch import load_file

    from damoc.curate.sae_io import load_sae

    loaded = load_sae(SAE_LENS / name)
    ref = load_file(str(SAE_LENS / name / "reference.safetensors"))  # sae-lens 6.54's own encode
    assert loaded.format == "sae-lens" and loaded.layer == 1  # blocks.1.hook_resid_post
    assert loaded.sae.cfg.d_model == 16 and loaded.sae.cfg.width == 64
    with torch.no_grad():
        z = loaded.sae.encode(ref["x"])
    assert torch.equal(z > 0, ref["latents"] > 0)
    assert torch.allclose(z, ref["latents"], atol=1e-5)


def test_export_to_sae_lens_layout_round_trips(tmp_path):
    import json

    from damoc.curate.sae_io import export_sae_lens, load_sae

    sae, x = _trained_sae()
    export_sae_lens(sae, tmp_path / "sl", model_name="tiny", hook_name="blocks.2.hook_resid_post")
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["d_in"] == sae.cfg.d_model and cfg["d_sae"] == sae.cfg.width
    assert cfg["k"] == 4 and cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    back = load_sae(tmp_path / "sl")
    assert back.format == "sae-lens" and back.layer == 2 and float(back.sae.input_scale) == 1.0
    with torch.no_grad():
        z0, z1 = sae.encode(x), back.sae.encode(x)
        assert torch.allclose(z0, z1, atol=1e-4 * float(z0.abs().max()))
        assert torch.allclose(back.sae(x)[0], sae(x)[0], atol=1e-4)


def test_sae_loading_bad_input(tmp_path):
    import json
    import shutil

    from damoc.curate.sae_io import layer_from_hook, load_sae

    with pytest.raises(DamocError, match="is not an SAE directory"):
        load_sae(tmp_path)
    bad = tmp_path / "gated"
    shutil.copytree(SAE_LENS / "topk", bad)
    cfg = json.loads((bad / "cfg.json").read_text())
    (bad / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(DamocError, match="architecture 'gated' is not supported"):
        load_sae(bad)
    (bad / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 65}))
    with pytest.raises(DamocError, match="shape"):
        load_sae(bad)
    old = {k: v for k, v in cfg.items() if k not in ("architecture", "k", "metadata")}  # a pre-6.0 config
    (bad / "cfg.json").write_text(
        json.dumps(
            {
                **old,
                "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": 6},
                "hook_point": "blocks.3.hook_resid_pre",
            }
        )
    )
    loaded = load_sae(bad)
    assert loaded.sae.cfg.activation == "topk" and loaded.sae.cfg.k == 6 and loaded.layer == 2
    assert (
        layer_from_hook("blocks.0.hook_resid_pre") is None and layer_from_hook("blocks.4.attn.hook_z") is None
    )


# ---------------------------------------------------------------- cache and curation with a given SAE


def _curation_inputs():
    from damoc.io.tasks import Example

    med = load_examples("pubmedqa")
    fin = load_examples("finance")
    pool = med[10:22] + fin[:12]
    for e in pool:
        e.meta["domain"] = "medical" if e in med[10:22] else "finance"
    return pool, med[:5], Example


def test_sae_cache_reuses_training_and_pool_signatures(tmp_path, tiny_dirs, monkeypatch):
    import damoc.curate.curation as cur  # the SAE method looks train_sae and residual_activations up here
    from damoc.curate.config import CurationSettings
    from damoc.curate.pipeline import curate_examples
    from damoc.model.arch import load_model

    pool, seeds, _ = _curation_inputs()
    model, tok = load_model(tiny_dirs["llama"])
    cfg = CurationSettings(
        top=6, compare=[], max_length=32, sae_cache=str(tmp_path / "cache"),
        sae=SAETrainConfig(expansion=2, k=4, steps=10, batch_size=64),
    )  # fmt: skip
    first = curate_examples(pool, seeds, cfg, model, tok, str(tiny_dirs["llama"]))
    assert first.report.sae["source"] == "trained" and len(list((tmp_path / "cache").iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("the SAE should come from the cache")

    monkeypatch.setattr(cur, "train_sae", boom)
    calls = []
    real = cur.residual_activations
    monkeypatch.setattr(
        cur,
        "residual_activations",
        lambda m, t, texts, *a, **k: calls.append(len(texts)) or real(m, t, texts, *a, **k),
    )
    again = curate_examples(pool, seeds, cfg, model, tok, str(tiny_dirs["llama"]))
    assert again.report.sae["source"] == "cache" and calls == [len(seeds)]  # only the seeds run the model
    assert again.scores == pytest.approx(first.scores, abs=1e-6)
    assert [e.id for e in again.examples] == [e.id for e in first.examples]
    with pytest.raises(AssertionError, match="from the cache"):  # another pool is another key
        curate_examples(pool[:-1], seeds, cfg, model, tok, str(tiny_dirs["llama"]))


def test_curation_with_a_given_sae_uses_its_layer_and_skips_training(tmp_path, tiny_dirs, monkeypatch):
    import damoc.curate.curation as cur  # the SAE method looks train_sae up here
    from damoc.curate.config import CurationSettings
    from damoc.curate.pipeline import curate_examples
    from damoc.curate.sae_io import export_sae_lens
    from damoc.model.arch import load_model

    pool, seeds, _ = _curation_inputs()
    model, tok = load_model(tiny_dirs["llama"])
    small = SAETrainConfig(expansion=2, k=4, steps=10, batch_size=64)
    trained = curate_examples(
        pool,
        seeds,
        CurationSettings(top=6, compare=[], max_length=32, layer=1, sae=small, sae_cache=None),
        model,
        tok,
    )
    export_sae_lens(trained.sae, tmp_path / "sl", hook_name="blocks.1.hook_resid_post")
    wide_model = tiny_model("llama", 4, seed=1, hidden=48)
    wide = CurationSettings(top=6, compare=[], max_length=32, sae=small, sae_cache=None)
    export_sae_lens(curate_examples(pool, seeds, wide, wide_model, tok).sae, tmp_path / "wide")

    def boom(*a, **k):
        raise AssertionError("trained")

    monkeypatch.setattr(cur, "train_sae", boom)
    given_cfg = CurationSettings(top=6, compare=[], max_length=32, sae_path=str(tmp_path / "sl"))
    given = curate_examples(pool, seeds, given_cfg, model, tok)
    assert given.report.sae["source"] == "file" and given.report.sae["layer"] == 1
    assert given.scores == pytest.approx(trained.scores, abs=1e-4)
    with pytest.raises(DamocError, match="48-wide activations"):
        curate_examples(
            pool, seeds, given_cfg.model_copy(update={"sae_path": str(tmp_path / "wide")}), model, tok
        )


def test_cli_curate_saves_the_sae_and_reads_it_back(tmp_path, tiny_dirs, run_cli):
    import json

    pool, seeds, _ = _curation_inputs()
    files = {}
    for name, rows in (("pool", pool), ("seeds", seeds)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(e.to_row()) + "\n" for e in rows))
    base = ["curate", "--pool", files["pool"], "--seeds", files["seeds"], "--model", tiny_dirs["llama"], "--top", "6",
            "--compare", "tfidf", "--expansion", "2", "--k", "4", "--sae-steps", "10", "--max-length", "32",
            "--sae-cache", "none"]  # fmt: skip
    code, out, err = run_cli(
        *base, "--out", tmp_path / "a.jsonl", "--save-sae", tmp_path / "sae", "--save-sae-format", "sae-lens"
    )
    assert code == 0, err
    assert (
        (tmp_path / "sae" / "cfg.json").is_file() and "SAE written" in out and "SAE (trained, layer 2)" in out
    )
    code, out, err = run_cli(*base, "--out", tmp_path / "b.jsonl", "--sae", tmp_path / "sae")
    assert code == 0, err
    assert "SAE (file, layer 2)" in out and "SAE steps" not in out
    a = [json.loads(x)["id"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x)["id"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert a == b
    code, _, err = run_cli(*base, "--out", tmp_path / "c.jsonl", "--sae", tmp_path / "nothing")
    assert code == 2 and "is not an SAE directory" in err and not (tmp_path / "c.jsonl").exists()
