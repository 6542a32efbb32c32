"""Known answers for the task metrics (SQuAD EM/F1 normalisation, ROUGE-L) and model scoring."""

import math

import pytest

from damoc.errors import DamocError
from damoc.evaluate.metrics import (
    METRICS,
    exact_match,
    get_metric,
    normalize_answer,
    rouge_l,
    text_metric,
    token_f1,
)


def test_squad_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("  ") == ""


def test_exact_match_known_answers():
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert exact_match("Broncos", "Denver Broncos") == 0.0


def test_token_f1_known_answers():
    # pred {denver, broncos, team} vs gold {denver, broncos}: P = 2/3, R = 1 -> F1 = 0.8
    assert token_f1("Denver Broncos team", "the Denver Broncos") == pytest.approx(0.8)
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("a", "Denver") == 0.0  # "a" normalises to nothing
    # repeated tokens count once per match: pred "x x y" vs gold "x y y" -> common {x:1, y:1} = 2
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_rouge_l_known_answers():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # LCS("a b c d", "a c d e") = "a c d" (3): P = 3/4, R = 3/4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("x", "y") == 0.0


def test_text_metric_takes_best_gold():
    scores = text_metric(
        "exact_match", ["Broncos", "Panthers"], [["Denver Broncos", "Broncos"], ["Carolina"]]
    )
    assert scores == [1.0, 0.0]
    with pytest.raises(DamocError, match="not a generation metric"):
        text_metric("answer_bpb", ["a"], [["a"]])


def test_registry_directions():
    assert set(METRICS.names()) >= {
        "answer_bpb",
        "label_acc",
        "exact_match",
        "f1",
        "rouge_l",
        "answer_nll",
        "perplexity",
    }
    assert get_metric("answer_bpb").higher_is_better is False
    assert get_metric("label_acc").needs_labels
    assert get_metric("f1").better(0.9, 0.5) and get_metric("answer_bpb").better(0.5, 0.9)
    with pytest.raises(DamocError, match="unknown metric 'answer_bp'; did you mean 'answer_bpb'"):
        get_metric("answer_bp")


@pytest.fixture(scope="module")
def tiny():
    from damoc.testing import tiny_model, tiny_tokenizer

    return tiny_model("llama", 2, seed=0), tiny_tokenizer()


def _examples():
    from damoc.io.tasks import Example

    return [
        Example(
            id=str(i),
            question=f"Is {i} even?",
            answer="yes" if i % 2 == 0 else "no",
            label="yes" if i % 2 == 0 else "no",
        )
        for i in range(6)
    ]


def test_scoring_likelihood_matches_answer_scores(tiny):
    from damoc.evaluate.likelihood import answer_scores
    from damoc.evaluate.scoring import EvalConfig, score_examples

    model, tok = tiny
    ex = _examples()
    s = score_examples(model, tok, ex, EvalConfig(metric="answer_bpb"))
    ref = answer_scores(model, tok, [e.prompt() for e in ex], [e.answer for e in ex])
    pooled = sum(r.nll for r in ref) / math.log(2) / sum(r.n_bytes for r in ref)
    assert s.value == pytest.approx(pooled)
    assert s.higher_is_better is False and s.n_examples == 6 and s.tokens > 0
    nll = score_examples(model, tok, ex, EvalConfig(metric="answer_nll")).value
    ppl = score_examples(model, tok, ex, EvalConfig(metric="perplexity")).value
    assert ppl == pytest.approx(math.exp(nll))


def test_scoring_labels_and_generation(tiny):
    from damoc.evaluate.scoring import EvalConfig, score_examples

    model, tok = tiny
    ex = _examples()
    acc = score_examples(model, tok, ex, EvalConfig(metric="label_acc"))
    assert set(acc.predictions) <= {"yes", "no"} and acc.value in {i / 6 for i in range(7)}
    gen = score_examples(model, tok, ex, EvalConfig(metric="f1", max_new_tokens=4), shots=ex[:1])
    assert len(gen.predictions) == 6 and 0.0 <= gen.value <= 1.0


def test_label_metric_needs_labels(tiny):
    from damoc.evaluate.scoring import EvalConfig, score_examples
    from damoc.io.tasks import Example

    model, tok = tiny
    with pytest.raises(DamocError, match="needs a label on every example"):
        score_examples(
            model, tok, [Example(id="0", question="q", answer="a")], EvalConfig(metric="label_acc")
        )


def test_effective_batch_shrinks_for_large_vocabularies():
    import types

    from damoc.evaluate.scoring import EvalConfig, effective_batch

    def model(vocab):
        return types.SimpleNamespace(config=types.SimpleNamespace(vocab_size=vocab))

    cfg = EvalConfig(batch_size=8, logits_budget_mb=3000)
    assert effective_batch(model(49152), cfg, 256) == 8  # small vocabulary: as asked
    assert effective_batch(model(262144), cfg, 256) == 3  # Gemma-3: 3000 MiB // (256 × 262144 × 12 B)
    assert effective_batch(model(262144), cfg, 4096) == 1  # never below one


def _choice_examples():
    from damoc.io.tasks import Example

    opts = ["red apple", "green pear", "blue plum"]
    return [
        Example(id=str(i), question=f"Which fruit is number {i}?", answer=opts[i % 3], meta={"options": opts})
        for i in range(6)
    ]


def test_option_acc_picks_the_most_likely_option_per_byte(tiny):
    from damoc.evaluate.likelihood import answer_scores
    from damoc.evaluate.scoring import EvalConfig, score_examples

    model, tok = tiny
    ex = _choice_examples()
    s = score_examples(model, tok, ex, EvalConfig(metric="option_acc"))
    # the same choice made by hand from the options' answer likelihoods
    for e, pred in zip(ex, s.predictions, strict=True):
        opts = e.meta["options"]
        ref = answer_scores(model, tok, [e.prompt()] * len(opts), opts)
        per_byte = [r.nll / r.n_bytes for r in ref]
        assert pred == opts[per_byte.index(min(per_byte))]
    assert s.per_example == [float(p == e.answer) for p, e in zip(s.predictions, ex, strict=True)]
    assert s.value == pytest.approx(sum(s.per_example) / 6) and s.higher_is_better
    summed = score_examples(model, tok, ex, EvalConfig(metric="option_acc", option_norm="none"))
    for e, pred in zip(ex, summed.predictions, strict=True):
        ref = answer_scores(model, tok, [e.prompt()] * 3, e.meta["options"])
        assert pred == e.meta["options"][min(range(3), key=lambda j: ref[j].nll)]


def test_option_acc_needs_options_holding_the_answer(tiny):
    from damoc.evaluate.scoring import EvalConfig, score_examples
    from damoc.io.tasks import Example

    model, tok = tiny
    cfg = EvalConfig(metric="option_acc")
    with pytest.raises(DamocError, match="no list of at least two options in field 'options'"):
        score_examples(model, tok, [Example(id="0", question="q", answer="a")], cfg)
    bad = Example(id="1", question="q", answer="a", meta={"options": ["b", "c"]})
    with pytest.raises(DamocError, match="its answer is not one of its options"):
        score_examples(model, tok, [bad], cfg)


def test_generation_stops_a_row_once_its_answer_line_is_complete():
    import torch

    from damoc.evaluate.scoring import _LineDone
    from damoc.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    prompt = tok("Q: x\nA:")["input_ids"]
    rows = ["\n\nParis", "\n\nParis\nand more", " Paris\n", ""]
    ids = [prompt + tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(len(i) for i in ids)
    pad = tok.pad_token_id
    # right-pad after the prompt so every row's new tokens start at the prompt's end
    batch = torch.tensor([i + [pad] * (width - len(i)) for i in ids])
    done = _LineDone(tok, len(prompt))(batch, None)
    assert done.tolist() == [False, True, True, False]
