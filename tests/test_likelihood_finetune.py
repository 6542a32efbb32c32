import math

import pytest
import torch

from damoc.evaluate.likelihood import answer_scores, encode_pair, text_loss
from damoc.testing import tiny_model, tiny_tokenizer
from damoc.train.finetune import FinetuneConfig, finetune


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_encode_pair_keeps_answer_and_cuts_prompt_left(tok):
    ids, start = encode_pair(tok, "x" * 100, "yes", max_length=20)
    assert len(ids) == 20
    assert tok.decode(ids[start:]) == " yes"


def test_answer_nll_matches_manual_and_is_batch_invariant(tok):
    m = tiny_model("qwen2")
    prompts, answers = ["Q: one? A:", "Q: a longer question here? A:"], ["first", "second answer"]
    s1 = answer_scores(m, tok, prompts, answers, batch_size=1)
    s2 = answer_scores(m, tok, prompts, answers, batch_size=2)
    for a, b in zip(s1, s2, strict=True):
        assert a.nll == pytest.approx(b.nll, rel=1e-4)
    ids, st = encode_pair(tok, prompts[0], answers[0], 512)
    with torch.no_grad():
        logp = torch.log_softmax(m(torch.tensor([ids])).logits[0], -1)
    manual = -sum(float(logp[t - 1, ids[t]]) for t in range(st, len(ids)))
    assert s1[0].nll == pytest.approx(manual, rel=1e-4)
    assert s1[0].n_bytes == len(b"first")
    assert s1[0].bits_per_byte == pytest.approx(manual / math.log(2) / 5, rel=1e-4)


def test_finetune_lora_and_full_reduce_answer_loss(tok):
    pairs = [(f"Q: capital of land {i}? A:", f"city{i % 3}") for i in range(24)]
    for method, lr in (("lora", 1e-2), ("full", 3e-3)):
        m = tiny_model("llama", seed=2)
        before = sum(s.nll for s in answer_scores(m, tok, *zip(*pairs, strict=True)))
        res = finetune(m, tok, pairs, FinetuneConfig(method=method, epochs=4, lr=lr, batch_size=4))
        after = sum(s.nll for s in answer_scores(res.model, tok, *zip(*pairs, strict=True)))
        assert after < 0.8 * before, method
        assert type(res.model).__name__ == "LlamaForCausalLM"
        assert res.steps == 24 and res.tokens > 0


def test_finetune_token_budget_stops_early(tok):
    pairs = [(f"Q{i}", "a b c d") for i in range(40)]
    res = finetune(tiny_model("llama"), tok, pairs, FinetuneConfig(epochs=3, token_budget=100, batch_size=4))
    assert res.tokens >= 100 and res.steps < 30


def test_text_loss_of_uniform_model(tok):
    m = tiny_model("llama")
    with torch.no_grad():
        m.lm_head.weight.zero_()
    assert text_loss(m, tok, ["hello world", "abc"]) == pytest.approx(math.log(m.config.vocab_size), rel=1e-5)


def test_finetune_bf16_autocast_learns_and_keeps_fp32_weights(tok):
    pairs = [(f"Q: capital of land {i}? A:", f"city{i % 3}") for i in range(24)]
    m = tiny_model("llama", seed=2)
    before = sum(s.nll for s in answer_scores(m, tok, *zip(*pairs, strict=True)))
    cfg = FinetuneConfig(method="full", epochs=4, lr=3e-3, batch_size=4, precision="bf16")
    res = finetune(m, tok, pairs, cfg)
    after = sum(s.nll for s in answer_scores(res.model, tok, *zip(*pairs, strict=True)))
    assert after < 0.8 * before
    assert all(p.dtype == torch.float32 for p in res.model.parameters())


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "phi3"])
def test_answer_scores_equal_full_logit_reference(tok, arch):
    """Projecting only the answer positions gives the same NLL as the full-vocabulary reference."""
    import torch.nn.functional as F

    m = tiny_model(arch, seed=1)
    prompts = ["a long prompt " * 6, "short", "mid sized prompt here"]
    answers = ["yes", "no it is not", "maybe so"]
    got = answer_scores(m, tok, prompts, answers, batch_size=3)
    for p, a, s in zip(prompts, answers, got, strict=True):
        ids, start = encode_pair(tok, p, a, 512)
        with torch.no_grad():
            logits = m(input_ids=torch.tensor([ids])).logits[0, :-1]
        ref = F.cross_entropy(logits[start - 1 :], torch.tensor(ids[start:]), reduction="sum")
        assert s.nll == pytest.approx(float(ref), rel=1e-5, abs=1e-5)
        assert s.n_tokens == len(ids) - start


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2"])
def test_answer_head_positions_give_the_models_own_loss_and_gradients(tok, arch):
    """The answer-only output head computes the loss the model's own (full-logit) loss gives, and the same
    gradients, on a right-padded batch whose answers sit at different positions."""
    from damoc.evaluate.likelihood import collate
    from damoc.train.finetune import batch_loss

    pairs = [("a long prompt " * 6, "yes"), ("short", "no it is not"), ("mid sized prompt here", "maybe so")]
    enc = [encode_pair(tok, p, a, 512, add_eos=True) for p, a in pairs]
    batch = collate([e[0] for e in enc], [e[1] for e in enc], tok.pad_token_id or 0)
    grads = {}
    for where in ("all", "answer"):
        m = tiny_model(arch, seed=3)
        loss = batch_loss(m, batch, where, torch.device("cpu"))
        loss.backward()
        grads[where] = (
            float(loss.detach()),
            {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None},
        )
    (l_all, g_all), (l_ans, g_ans) = grads["all"], grads["answer"]
    assert l_ans == pytest.approx(l_all, rel=1e-5)
    assert g_all.keys() == g_ans.keys()
    for name, g in g_all.items():
        torch.testing.assert_close(g_ans[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_finetune_same_result_with_either_head_positions(tok):
    pairs = [(f"Q: capital of land {i}? A:", f"city{i % 3}") for i in range(12)]
    out = {}
    for where in ("all", "answer"):
        cfg = FinetuneConfig(method="lora", epochs=2, lr=1e-2, batch_size=4, head_positions=where)
        res = finetune(tiny_model("llama", seed=2), tok, pairs, cfg)
        out[where] = (
            res.losses,
            sum(s.nll for s in answer_scores(res.model, tok, *zip(*pairs, strict=True))),
        )
    assert out["answer"][0] == pytest.approx(out["all"][0], rel=1e-4)
    assert out["answer"][1] == pytest.approx(out["all"][1], rel=1e-4)
