"""Layer removal gives a real checkpoint: config sliced, KV cache correct, reloads without warnings."""

import pytest
import torch
from torch import nn

from damoc.errors import DamocError
from damoc.model.removal import remove_layers, slice_config, validate_removal
from damoc.testing import TINY_ARCHS, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_removing_nothing_keeps_logits(arch):
    a, b = tiny_model(arch, 4, seed=2), tiny_model(arch, 4, seed=2)
    assert remove_layers(b, []) == [0, 1, 2, 3]
    ids = torch.randint(3, 250, (2, 10))
    assert torch.equal(a(ids).logits, b(ids).logits)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_saved_checkpoint_reloads_and_caches(arch, tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_model(arch, 6, seed=2)
    kept = remove_layers(model, [2, 3])
    assert kept == [0, 1, 4, 5]
    cfg = model.config
    assert cfg.num_hidden_layers == 4 and len(model.model.layers) == 4
    if getattr(cfg, "layer_types", None) is not None:
        assert len(cfg.layer_types) == 4
    assert [blk.self_attn.layer_idx for blk in model.model.layers] == [0, 1, 2, 3]
    model.save_pretrained(tmp_path)
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # what the load warnings report: missing / unexpected / mismatched
    loaded.eval()
    ids = torch.randint(3, 250, (2, 12))  # 12 + 10 tokens: past gemma3's sliding window of 16
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-5)
    gen = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    cached = loaded.generate(ids, use_cache=True, **gen)
    assert torch.equal(cached, loaded.generate(ids, use_cache=False, **gen))
    assert torch.equal(cached, model.generate(ids, use_cache=True, **gen))


def test_original_layers_reused_and_per_layer_lists_sliced():
    model = tiny_model("gemma3_text", 6)
    old = list(model.model.layers)
    model.config.my_per_layer = [10, 11, 12, 13, 14, 15]
    model.config.max_window_layers = 3
    remove_layers(model, [1, 4])
    assert list(model.model.layers) == [old[0], old[2], old[3], old[5]]
    assert model.config.my_per_layer == [10, 12, 13, 15]
    assert model.config.max_window_layers == 2  # layers 0 and 2 were below 3
    assert model.config.layer_types == [
        "sliding_attention",
        "full_attention",
        "sliding_attention",
        "full_attention",
    ]


def test_slice_config_leaves_other_lists():
    from types import SimpleNamespace

    cfg = SimpleNamespace(num_hidden_layers=2, eos_token_id=[1, 2], layer_types=["a", "b"], other=[1, 2, 3])
    assert slice_config(cfg, [1]) == ["layer_types"]
    assert cfg.eos_token_id == [1, 2] and cfg.layer_types == ["b"] and cfg.num_hidden_layers == 1


def test_validate_removal_errors():
    with pytest.raises(DamocError, match="out of range"):
        validate_removal(4, [4])
    with pytest.raises(DamocError, match="protected"):
        validate_removal(4, [0], protected=[0, 3])
    with pytest.raises(DamocError, match="at least one"):
        validate_removal(3, [0, 1, 2])


def test_unknown_architecture_is_a_clear_error():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2)])

    with pytest.raises(DamocError, match="cannot find the decoder layers"):
        remove_layers(Odd(), [0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"])
def test_real_model_prune_save_reload(name, tmp_path):
    """A zoo model pruned with the linear merge saves, reloads with equal logits, and caches correctly."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from damoc.io.tasks import calibration_texts
    from damoc.model.arch import load_model
    from damoc.model.layer_pruning import LayerPruneConfig, prune_layers, save_pruned

    if not (Path.home() / ".cache" / "damoc" / "zoo" / name / "config.json").is_file():
        pytest.skip(f"{name} is not in the zoo cache")
    model, tok = load_model(name)
    cfg = LayerPruneConfig(remove=2, calib_samples=8, calib_length=64, refine_steps=20)
    report = prune_layers(model, tok, calibration_texts("pubmedqa", limit=8), cfg)
    save_pruned(model, tok, tmp_path / "out", report)
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info.values())
    ids = tok("The patients were treated with", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-4)
    gen = dict(max_new_tokens=8, do_sample=False)
    assert torch.equal(
        loaded.generate(ids, use_cache=True, **gen), loaded.generate(ids, use_cache=False, **gen)
    )
