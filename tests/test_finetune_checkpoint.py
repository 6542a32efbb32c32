"""A fine-tune killed mid-way continues from its saved state and ends where an uninterrupted one does."""

import pytest
import torch

import damoc.train.finetune as ft_mod
from damoc.testing import tiny_model, tiny_tokenizer
from damoc.train.finetune import FinetuneConfig, finetune

PAIRS = [(f"Question: what is {i} plus {i}?\nAnswer:", f" {2 * i}") for i in range(10)]


class Killed(Exception):
    pass


def _kill_after(monkeypatch, n_steps):
    real = ft_mod.batch_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):
        if calls["n"] == n_steps:
            raise Killed
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ft_mod, "batch_loss", dying)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_continued_fine_tune_equals_uninterrupted(tmp_path, monkeypatch, method):
    tok = tiny_tokenizer()
    cfg = FinetuneConfig(method=method, epochs=3, batch_size=4, lr=1e-3)  # 9 steps, reshuffled each epoch
    whole = finetune(tiny_model("llama", seed=1), tok, PAIRS, cfg)
    ckpt = tmp_path / "unit.finetune.pt"
    with monkeypatch.context() as m:
        _kill_after(m, 5)
        with pytest.raises(Killed):
            finetune(tiny_model("llama", seed=1), tok, PAIRS, cfg, checkpoint=ckpt, checkpoint_every_s=1e-9)
    assert torch.load(ckpt, weights_only=False)["step"] == 5
    # full: another initialisation proves every weight comes from the save; LoRA saves only the adapters, the
    # frozen base is the caller's (the same model, loaded again)
    seed = 7 if method == "full" else 1
    resumed = finetune(
        tiny_model("llama", seed=seed), tok, PAIRS, cfg, checkpoint=ckpt, checkpoint_every_s=1e-9
    )
    assert resumed.steps == whole.steps == 9
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    a, b = _weights(whole.model), _weights(resumed.model)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert torch.load(ckpt, weights_only=False)["done"] is True


def test_finished_save_skips_training_and_a_foreign_save_is_ignored(tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    cfg = FinetuneConfig(method="full", epochs=1, batch_size=4, lr=1e-3)
    ckpt = tmp_path / "unit.finetune.pt"
    first = finetune(tiny_model("llama", seed=1), tok, PAIRS, cfg, checkpoint=ckpt)
    with monkeypatch.context() as m:
        _kill_after(m, 0)  # any training step would raise
        again = finetune(tiny_model("llama", seed=1), tok, PAIRS, cfg, checkpoint=ckpt)
    assert again.steps == first.steps and again.losses == first.losses
    for k, v in _weights(first.model).items():
        assert torch.equal(v, _weights(again.model)[k])
    other = cfg.model_copy(update={"lr": 5e-4})  # other settings: starts from step 0
    fresh = finetune(tiny_model("llama", seed=1), tok, PAIRS, other, checkpoint=ckpt)
    assert fresh.steps == first.steps and fresh.losses[0] == pytest.approx(first.losses[0])
    assert fresh.losses[-1] != pytest.approx(first.losses[-1])
