"""Structured pruning: group scores, uniform sizes, the parameter ratio, reloadable checkpoints, bad input."""

import pytest
import torch

from damoc.errors import DamocError
from damoc.model.arch import load_model
from damoc.model.structured import StructuredPruneConfig, save_pruned, structured_prune
from damoc.model.structured.groups import AttentionShape, head_rows, query_heads_of_groups
from damoc.model.structured.importance import group_scores
from damoc.model.structured.prune import count_params, keep_top
from damoc.testing import tiny_model, tiny_tokenizer

TEXTS = [f"Patient {i} was given {i % 3} mg of drug X and recovered after {i + 2} days." for i in range(8)]


def test_group_index_math():
    assert head_rows(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]
    assert query_heads_of_groups(torch.tensor([1]), 3).tolist() == [3, 4, 5]
    assert keep_top(torch.tensor([3.0, 1.0, 2.0, 5.0]), 2).tolist() == [0, 3]


def test_group_scores_sum_the_right_rows_and_columns():
    sh = AttentionShape(n_heads=4, n_kv=2, head_dim=2)
    hidden, inter = 3, 5
    ones = {
        "q_proj.weight": torch.ones(8, hidden),
        "k_proj.weight": torch.ones(4, hidden),
        "v_proj.weight": torch.ones(4, hidden),
        "o_proj.weight": torch.ones(hidden, 8),
        "gate_proj.weight": torch.ones(inter, hidden),
        "up_proj.weight": torch.ones(inter, hidden),
        "down_proj.weight": torch.ones(hidden, inter),
    }
    ones["q_proj.weight"][2:4] = 0  # query head 1's rows
    s = group_scores(ones, sh)
    # a query head: 2 q rows x 3 + 2 o columns x 3 = 12; head 1 has only its o columns = 6
    assert s.query_heads.tolist() == [[12.0, 6.0], [12.0, 12.0]]
    # a KV group: k + v rows (2 x 3 x 2 = 12) plus its query heads
    assert s.kv_groups.tolist() == [30.0, 36.0]
    assert s.channels.tolist() == [9.0] * 5


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma3_text", "mistral"])
@pytest.mark.parametrize("unit", ["query_heads", "kv_groups"])
def test_prune_ratio_shapes_and_reload(arch, unit, tmp_path):
    model, tok = tiny_model(arch, 4, seed=1), tiny_tokenizer()
    before = count_params(model)
    rep = structured_prune(model, tok, TEXTS, StructuredPruneConfig(ratio=0.3, attention_unit=unit))
    assert abs(rep.ratio_achieved - 0.3) < 0.01
    assert count_params(model) == rep.params_after < before
    conf = model.config
    assert conf.num_attention_heads % conf.num_key_value_heads == 0
    for layer in model.model.layers:
        a, m = layer.self_attn, layer.mlp
        assert a.q_proj.out_features == conf.num_attention_heads * conf.head_dim == a.o_proj.in_features
        assert a.k_proj.out_features == conf.num_key_value_heads * conf.head_dim == a.v_proj.out_features
        assert (
            m.gate_proj.out_features
            == m.up_proj.out_features
            == m.down_proj.in_features
            == conf.intermediate_size
        )
    if unit == "kv_groups":
        assert rep.num_key_value_heads == (2, 1)
    else:
        assert rep.num_key_value_heads == (2, 2) and rep.num_attention_heads == (4, 2)
    ids = tok(TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**ids).logits
    save_pruned(model, tok, rep, tmp_path / "p")
    again, _ = load_model(tmp_path / "p")
    with torch.no_grad():
        assert torch.allclose(again(**ids).logits, logits, atol=1e-5)
    assert (tmp_path / "p" / "pruning.json").is_file()


def test_zero_weight_units_are_pruned_first():
    model, tok = tiny_model("llama", 2, seed=0), tiny_tokenizer()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight[5].zero_()
            layer.mlp.up_proj.weight[5].zero_()
            layer.mlp.down_proj.weight[:, 5].zero_()
            layer.self_attn.q_proj.weight[8:16].zero_()  # query head 1 (head_dim 8)
            layer.self_attn.o_proj.weight[:, 8:16].zero_()
    for method in ("magnitude", "taylor"):
        m = tiny_model("llama", 2, seed=0)
        m.load_state_dict(model.state_dict())
        rep = structured_prune(m, tok, TEXTS, StructuredPruneConfig(ratio=0.2, importance=method))
        assert all(1 not in heads for heads in rep.kept_heads)
        assert m.model.layers[0].mlp.gate_proj.out_features < 64
        # channel 5 is gone: no kept gate row is all zero
        assert (m.model.layers[0].mlp.gate_proj.weight.abs().sum(1) > 0).all()


def _llama_as_phi3(llama):
    """A Phi-3 model computing the same function as ``llama``: q/k/v and gate/up concatenated."""
    phi = tiny_model("phi3", len(llama.model.layers), seed=9, rms_norm_eps=llama.config.rms_norm_eps)
    sd = {}
    for k, v in llama.state_dict().items():
        sd[k] = v
    for i in range(len(llama.model.layers)):
        p = f"model.layers.{i}."
        sd[p + "self_attn.qkv_proj.weight"] = torch.cat(
            [sd.pop(p + f"self_attn.{n}_proj.weight") for n in ("q", "k", "v")]
        )
        sd[p + "mlp.gate_up_proj.weight"] = torch.cat(
            [sd.pop(p + f"mlp.{n}_proj.weight") for n in ("gate", "up")]
        )
    phi.load_state_dict(sd)
    return phi


@pytest.mark.parametrize("unit", ["query_heads", "kv_groups"])
def test_phi3_fused_projections_prune_like_the_split_layout(unit, tmp_path):
    """Phi-3 (fused qkv_proj, gate_up_proj) holding a Llama's weights prunes to the same function, and the
    saved checkpoint reloads with the in-memory pruned model's logits."""
    tok = tiny_tokenizer()
    llama = tiny_model("llama", 3, seed=4)
    phi = _llama_as_phi3(llama)
    ids = tok(TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(phi(**ids).logits, llama(**ids).logits, atol=1e-5)
    cfg = StructuredPruneConfig(ratio=0.3, attention_unit=unit)
    rep_l = structured_prune(llama, tok, TEXTS, cfg)
    rep_p = structured_prune(phi, tok, TEXTS, cfg)
    assert rep_p.kept_heads == rep_l.kept_heads and rep_p.params_after == rep_l.params_after
    assert rep_p.intermediate_size == rep_l.intermediate_size and abs(rep_p.ratio_achieved - 0.3) < 0.01
    conf = phi.config
    for layer in phi.model.layers:
        a, m = layer.self_attn, layer.mlp
        assert (
            a.qkv_proj.out_features
            == (conf.num_attention_heads + 2 * conf.num_key_value_heads) * conf.head_dim
        )
        assert m.gate_up_proj.out_features == 2 * conf.intermediate_size == 2 * m.down_proj.in_features
    with torch.no_grad():
        logits = phi(**ids).logits
        assert torch.allclose(logits, llama(**ids).logits, atol=1e-5)
    save_pruned(phi, tok, rep_p, tmp_path / "phi")
    again, _ = load_model(tmp_path / "phi")
    assert type(again).__name__ == "Phi3ForCausalLM"
    with torch.no_grad():
        assert torch.allclose(again(**ids).logits, logits, atol=1e-5)


def test_unsupported_layout_and_unreachable_ratio():
    tok = tiny_tokenizer()
    odd = tiny_model("llama", 2)
    for layer in odd.model.layers:
        layer.mlp = torch.nn.Sequential(torch.nn.Linear(32, 32))
    with pytest.raises(DamocError, match="separate q/k/v/o and gate/up/down projections, or Phi-3"):
        structured_prune(odd, tok, TEXTS, StructuredPruneConfig(ratio=0.2))
    with pytest.raises(DamocError, match="prunable"):
        structured_prune(tiny_model("llama", 2), tok, TEXTS, StructuredPruneConfig(ratio=0.95))


def test_cli_prune_structured(tiny_dirs, qa_file, tmp_path, run_cli):
    out = tmp_path / "pruned"
    code, stdout, err = run_cli(
        "prune",
        "structured",
        tiny_dirs["qwen2"],
        "--ratio",
        "0.25",
        "--data",
        qa_file,
        "--out",
        out,
        "--samples",
        "8",
    )
    assert code == 0, err
    assert "removed" in stdout
    m, _ = load_model(out)
    assert m.config.intermediate_size < 64


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.2"])
def test_cli_bad_ratio(tiny_dirs, qa_file, tmp_path, run_cli, ratio):
    out = tmp_path / "bad"
    code, _, err = run_cli(
        "prune", "structured", tiny_dirs["llama"], "--ratio", ratio, "--data", qa_file, "--out", out
    )
    assert code == 2
    assert err.strip() == f"error: --ratio must be in (0, 1), got {float(ratio)}"
    assert not out.exists()


def test_cli_taylor_needs_data(tiny_dirs, tmp_path, run_cli):
    code, _, err = run_cli("prune", "structured", tiny_dirs["llama"], "--out", tmp_path / "o")
    assert code == 2 and "needs calibration data" in err
    assert not (tmp_path / "o").exists()
