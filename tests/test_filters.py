"""The data filters: one shared suite over every registered filter, then known answers per method."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from damoc.data.filters import FILTERS, FilterContext, filter_names, make_filter, resolve_budget, run_filter
from damoc.data.filters.distribution.dsir import hashed_ngrams, importance_log_weights
from damoc.data.filters.distribution.kcenter import kcenter_greedy
from damoc.data.filters.hybrid.cluster_rank import round_robin
from damoc.data.filters.hybrid.quality_kcenter import quality_kcenter
from damoc.data.filters.quality.llm_judge import LLMJudgeOptions, parse_score
from damoc.data.filters.quality.perplexity import band_quality
from damoc.errors import DamocError
from damoc.io.tasks import Example

TOPICS = [
    "insulin dosing in type two diabetes patients",
    "quarterly revenue growth of the retail segment",
    "antibiotic resistance in hospital acquired pneumonia",
    "depreciation of property plant and equipment",
    "blood pressure response to beta blockers",
    "operating cash flow and working capital changes",
]


def make_pool(n: int = 30, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    words = "study trial patients group results effect level analysis rate increase risk cost share".split()
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        filler = " ".join(rng.choice(words) for _ in range(8))
        out.append(
            Example(
                id=f"r{i}",
                question=f"What did the report find about {topic} in case {i}?",
                context=f"The report on {topic} describes {filler} for case {i}.",
                answer=f"It found a change in {topic.split()[0]} with {rng.choice(words)} noted.",
                label=["yes", "no", "maybe"][i % 3],
            )
        )
    return out


def fake_judge(prompts: list[str]) -> list[str]:
    replies = ["4", "Score: 2\nok", "3.5 because", "no idea", "5/5", "9"]
    return [replies[i % len(replies)] for i in range(len(prompts))]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run ~10x faster on one thread than on two when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_lm():
    from damoc.testing import tiny_model, tiny_tokenizer

    return tiny_model("llama", n_layers=2, seed=0), tiny_tokenizer()


@pytest.fixture(scope="module")
def pool():
    return make_pool(30)


@pytest.fixture(scope="module")
def common(tiny_lm, pool):
    """Context options every filter can run with: fast embedder, tiny LM, fake judge, DSIR target."""
    return {
        "embedder": "tfidf",
        "reference_model": tiny_lm,
        "judge": fake_judge,
        "target": make_pool(6, seed=9),
    }


NAMES = filter_names()


def test_twelve_filters_in_three_families():
    assert len(NAMES) == 12
    fams = Counter(FILTERS.entry(n).family for n in NAMES)
    assert fams == {"distribution": 5, "quality": 4, "hybrid": 3}
    assert [FILTERS.get(n).code for n in NAMES] == [
        "D1",
        "D2",
        "D3",
        "D4",
        "D5",
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "H1",
        "H2",
        "H3",
    ]


# ---------------------------------------------------------------- the shared suite


@pytest.mark.parametrize("name", NAMES)
def test_contract_budgets_and_determinism(name, pool, common):
    n = len(pool)
    for budget, want in ((1, 1), (7, 7), (0.25, 8), (n - 1, n - 1)):
        sel = run_filter(name, pool, budget, seed=3, **common)
        assert len(sel.indices) == want, (name, budget)
        assert len(set(sel.indices)) == want
        assert all(isinstance(i, int) and 0 <= i < n for i in sel.indices)
        if sel.scores is not None:
            assert len(sel.scores) == n
    a = run_filter(name, pool, 9, seed=5, **common)
    b = run_filter(name, pool, 9, seed=5, **common)
    assert a.indices == b.indices
    assert a.scores == b.scores


@pytest.mark.parametrize("name", NAMES)
def test_budget_at_least_pool_and_single_row(name, pool, common):
    for budget in (len(pool), len(pool) + 10, 1000):
        assert run_filter(name, pool, budget, **common).indices == list(range(len(pool)))
    assert run_filter(name, pool[:1], 0.5, **common).indices == [0]
    assert run_filter(name, pool[:1], 1, **common).indices == [0]
    assert sorted(run_filter(name, pool[:2], 1, **common).indices) in ([0], [1])


@pytest.mark.parametrize("name", NAMES)
def test_bad_budget_and_options(name, pool, common):
    for bad in (0, -1, -0.5, 1.5, float("nan")):
        with pytest.raises(DamocError, match="budget"):
            run_filter(name, pool, bad, **common)
    with pytest.raises(DamocError, match="no examples"):
        run_filter(name, [], 0.5, **common)
    with pytest.raises(DamocError, match="not_an_option: unknown key"):
        run_filter(name, pool, 3, not_an_option=1, **common)


def test_resolve_budget():
    assert resolve_budget(0.1, 1000) == 100
    assert resolve_budget(0.001, 10) == 1
    assert resolve_budget(5, 3) == 3
    assert resolve_budget(5.0, 10) == 5
    with pytest.raises(DamocError, match="whole"):
        resolve_budget(2.5, 10)


def test_unknown_filter_names_a_close_match(pool):
    with pytest.raises(DamocError, match="did you mean 'kcenter'"):
        run_filter("kcentre", pool, 3)


# ---------------------------------------------------------------- distribution: known answers


def test_stratified_random_keeps_label_proportions():
    pool = [
        Example(id=str(i), question=f"q {i}", answer="a", label=lab)
        for i, lab in enumerate("A" * 30 + "B" * 20 + "C" * 10)
    ]
    for seed in range(4):
        sel = run_filter("random", pool, 12, seed=seed)
        assert Counter(pool[i].label for i in sel.indices) == {"A": 6, "B": 4, "C": 2}
    assert run_filter("random", pool, 12, seed=0).indices != run_filter("random", pool, 12, seed=1).indices
    # stratify off, or labels read from another field
    meta_pool = [Example(id=e.id, question=e.question, answer="a", meta={"kind": e.label}) for e in pool]
    sel = run_filter("random", meta_pool, 12, label_field="kind")
    assert Counter(meta_pool[i].meta["kind"] for i in sel.indices) == {"A": 6, "B": 4, "C": 2}


def test_kcenter_picks_far_apart_points():
    rng = np.random.default_rng(0)
    centre = rng.normal(0, 0.05, size=(20, 2))
    far = np.array([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]])
    x = np.vstack([centre, far]).astype(np.float32)
    chosen, dist = kcenter_greedy(x, 4, first=0)
    assert set(chosen[1:]) == {20, 21, 22}
    assert dist[chosen].max() == 0.0
    pool = [Example(id=str(i), question=f"q{i}", answer="a") for i in range(len(x))]
    for seed in range(5):  # any start: the three outliers are always in a budget of 4
        sel = run_filter("kcenter", pool, 4, seed=seed, embeddings=x)
        assert {20, 21, 22} <= set(sel.indices)


def test_kmeans_samples_clusters_in_proportion():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(c, 0.01, size=(m, 2)) for c, m in (((5, 0), 30), ((0, 5), 20), ((-5, -5), 10))])
    pool = [Example(id=str(i), question=f"q{i}", answer="a") for i in range(len(x))]
    sel = run_filter("kmeans", pool, 6, embeddings=x.astype(np.float32), clusters=3)
    blocks = Counter(0 if i < 30 else 1 if i < 50 else 2 for i in sel.indices)
    assert blocks == {0: 3, 1: 2, 2: 1}


def test_semdedup_removes_planted_near_duplicates():
    pool = make_pool(24, seed=2)
    pairs = []
    for j, src in enumerate((0, 5, 9, 14)):
        ex = pool[src]
        pool.append(
            Example(id=f"dup{j}", question=ex.question.upper(), context=ex.context + " ", answer=ex.answer)
        )
        pairs.append((src, len(pool) - 1))
    sel = run_filter("semdedup", pool, 24, embedder="tfidf", threshold=0.95)
    assert sel.info["duplicates"] == 4
    kept = set(sel.indices)
    for a, b in pairs:
        assert (a in kept) != (b in kept), (a, b)
    # a budget above the unique rows is filled with duplicates
    assert len(run_filter("semdedup", pool, 26, embedder="tfidf", threshold=0.95).indices) == 26


def test_dsir_prefers_target_like_rows():
    med = [
        Example(
            id=f"m{i}",
            question=f"Does drug {i} lower blood pressure in elderly patients?",
            answer="Yes, in the trial.",
        )
        for i in range(20)
    ]
    fin = [
        Example(
            id=f"f{i}",
            question=f"What was the net revenue of segment {i} in fiscal 2019?",
            answer="It rose 5%.",
        )
        for i in range(20)
    ]
    pool = [x for pair in zip(fin, med, strict=True) for x in pair]
    target = [
        Example(
            id=f"t{i}", question=f"Is therapy {i} safe for patients with high blood pressure?", answer="No."
        )
        for i in range(5)
    ]
    sel = run_filter("dsir", pool, 10, target=target)
    assert sum(pool[i].id.startswith("m") for i in sel.indices) >= 9
    w = np.array(sel.scores)
    assert (
        w[[i for i, e in enumerate(pool) if e.id.startswith("m")]].min()
        > w[[i for i, e in enumerate(pool) if e.id.startswith("f")]].max()
    )
    with pytest.raises(DamocError, match="dsir needs target"):
        run_filter("dsir", pool, 10)


def test_dsir_weights_are_log_ratios():
    raw = hashed_ngrams(["alpha beta", "gamma delta"], 64, 1)
    tgt = hashed_ngrams(["alpha beta", "alpha beta"], 64, 1)
    w = importance_log_weights(raw, tgt, smoothing=1e-6, length_normalize=False)
    assert w[0] > 0 > w[1]


# ---------------------------------------------------------------- quality: known answers


def test_heuristics_reject_planted_junk():
    pool = make_pool(20, seed=3)
    junk = [
        Example(
            id="rep",
            question="Buy now buy now buy now buy now buy now buy now?",
            answer="buy now buy now buy now buy now",
        ),
        Example(id="sym", question="@@## $$%% ^^&& **(( ))__ ++== ~~``?", answer="<<>> ||\\\\ {{}} ¤¤§§"),
        Example(id="short", question="Why?", answer="ok"),
        Example(id="noans", question="What did the study find about dose?", answer="   "),
    ]
    pool = pool[:5] + junk[:2] + pool[5:12] + junk[2:] + pool[12:]
    sel = run_filter("heuristics", pool, 20)
    assert not {pool[i].id for i in sel.indices} & {j.id for j in junk}
    assert sel.info["rejected"] == 4
    assert set(sel.info["failed_checks"]) >= {"repetition", "non_text", "question_length", "answer_length"}


def test_heuristics_extractive_answer_must_be_in_context():
    pool = [
        Example(
            id=str(i),
            question=f"Who led project number {i}?",
            context=f"Project {i} was led by Dr Smith {i}.",
            answer=f"Dr Smith {i}",
        )
        for i in range(9)
    ]
    pool.append(
        Example(
            id="bad",
            question="Who led project number 9?",
            context="Project 9 was led by Dr Smith 9.",
            answer="Professor Jones",
        )
    )
    sel = run_filter("heuristics", pool, 9)
    assert 9 not in sel.indices
    assert sel.info["failed_checks"] == {"answer_in_context": 1}
    assert run_filter("heuristics", pool, 9, extractive=False).info["rejected"] == 0


def test_perplexity_band_quality():
    q = band_quality(np.arange(1.0, 10.0), 0.25, 0.75)
    assert np.allclose(q[2:7], 1.0)
    assert q[0] == q[-1] == 0.0
    assert 0 < q[1] < 1 and 0 < q[7] < 1


class CopyLM(torch.nn.Module):
    """A stand-in LM that copies: it predicts the token that followed the longest earlier match of the
    current suffix (an induction head), with confidence growing with the match length."""

    def __init__(self, vocab: int = 260, max_match: int = 8, gain: float = 1.5):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.max_match, self.gain = vocab, max_match, gain

    def forward(self, input_ids, attention_mask=None, **_):
        b, t = input_ids.shape
        logits = torch.zeros(b, t, self.vocab)
        for r in range(b):
            s = input_ids[r]
            run = torch.zeros(t, dtype=torch.long)  # run[j]: match length of the suffixes ending at i and j
            for i in range(t):
                prev = torch.zeros(t, dtype=torch.long)
                prev[1:] = run[:-1]
                run = torch.where(s == s[i], prev + 1, torch.zeros_like(prev))
                run[i:] = 0  # only earlier positions, and j + 1 must exist before i
                if run.max() > 0:
                    j = int(torch.nonzero(run == run.max())[-1])
                    logits[r, i, s[j + 1]] += self.gain * min(int(run.max()), self.max_match)
        return SimpleNamespace(logits=logits)


def test_ifd_ranks_answer_in_question_as_easy():
    from damoc.testing import tiny_tokenizer

    pool = [
        Example(
            id=str(i),
            question=f"Which enzyme does inhibitor {i} block in the liver?",
            answer=f"It blocks kinase type {i} strongly.",
        )
        for i in range(5)
    ]
    pool.append(
        Example(
            id="easy",
            question="Say this: It blocks kinase type 99 strongly. Which enzyme?",
            answer="It blocks kinase type 99 strongly.",
        )
    )
    lm = (CopyLM(), tiny_tokenizer())
    sel = run_filter("ifd", pool, 5, reference_model=lm, max_ifd=10.0)
    ifd = np.array(sel.scores)
    assert int(np.argmin(ifd)) == 5
    assert ifd[5] < 0.6 and ifd[:5].min() > 0.8
    assert 5 not in sel.indices  # highest difficulty first: the easy row is the one left out


def test_llm_judge_parses_scores_and_ranks_unparsable_last(pool):
    seen = []

    def judge(prompts):
        seen.extend(prompts)
        return fake_judge(prompts)

    sel = run_filter("llm-judge", pool[:6], 3, judge=judge)
    assert sel.scores == [4.0, 2.0, 3.5, -1.0, 5.0, -1.0]
    assert sel.indices == [4, 0, 2]
    assert sel.info["unparsable"] == 2
    assert pool[0].question in seen[0] and pool[0].answer in seen[0]
    pattern = LLMJudgeOptions().score_pattern
    assert parse_score("Rating: 4 out of 5", pattern, 5) == 4.0
    assert parse_score("4/5", pattern, 5) == 4.0
    assert parse_score("10, I mean 3.5", pattern, 5) == 3.5
    assert parse_score("The score is 0.", pattern, 5) == 0.0
    assert parse_score("Give a score of 0 to 5.", pattern, 5) is None  # an echoed scale is not a score
    assert parse_score("It rose 3% to 18.14%", pattern, 5) is None
    assert parse_score("", pattern, 5) is None

    def broken(prompts):
        return ["x"]

    with pytest.raises(RuntimeError, match="replies"):
        run_filter("llm-judge", pool[:6], 3, judge=broken)


def test_llm_judge_with_a_local_model(tiny_lm, pool):
    """The HF path runs end to end on a tiny random model (its replies are noise: mostly unparsable)."""
    sel = run_filter("llm-judge", pool[:4], 2, judge_model=tiny_lm, max_new_tokens=3)
    assert len(sel.indices) == 2 and len(sel.scores) == 4


# ---------------------------------------------------------------- hybrids


def test_cluster_rank_takes_best_row_per_cluster():
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(c, 0.01, size=(5, 2)) for c in ((5, 0), (0, 5), (-5, -5))]).astype(np.float32)
    pool = make_pool(15, seed=4)
    for i in (0, 5, 10):  # one junk row per cluster: never the cluster's pick
        pool[i] = Example(id=f"junk{i}", question="? ? ?", answer="@@@@ #### $$$$")
    sel = run_filter("cluster-rank", pool, 3, embeddings=x, clusters=3)
    assert sorted(i // 5 for i in sel.indices) == [0, 1, 2]
    assert not {0, 5, 10} & set(sel.indices)
    assert round_robin([np.array([3, 1]), np.array([0]), np.array([2, 4])], 4) == [3, 0, 2, 1]


def test_deita_admits_only_distant_rows():
    pool = make_pool(20, seed=5)
    dup = pool[3]
    pool += [
        Example(id=f"d{j}", question=dup.question, context=dup.context, answer=dup.answer) for j in range(5)
    ]
    sel = run_filter("deita", pool, 15, embedder="tfidf", tau=0.05)
    copies = {3, *range(20, 25)}
    assert len(copies & set(sel.indices)) == 1
    assert sel.info["admitted_by_distance"] == 15
    # tau so large nothing else is admitted: the budget is still filled in quality order
    assert len(run_filter("deita", pool, 15, embedder="tfidf", tau=2.5).indices) == 15


def test_quality_kcenter_reduces_to_kcenter_and_avoids_junk():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    plain, _ = kcenter_greedy(x, 6, first=7)
    assert quality_kcenter(x, np.ones(30), 6, first=7, alpha=1.0) == plain
    assert quality_kcenter(x, rng.uniform(0.1, 1, 30), 6, first=7, alpha=0.0) == plain
    q = np.ones(30)
    q[plain[1]] = 0.01  # the farthest row is junk: weighted, it is skipped for the next
    assert quality_kcenter(x, q, 2, first=7, alpha=1.0)[1] != plain[1]


def test_hybrid_quality_method_is_configurable(pool, common):
    sel = run_filter("deita", pool, 5, quality="llm-judge", **common)
    assert sel.score_name == "quality:llm-judge"
    with pytest.raises(DamocError, match="quality must be one of"):
        run_filter("deita", pool, 5, quality="kcenter")
    with pytest.raises(DamocError, match="unknown filter"):
        run_filter("deita", pool, 5, quality="nope")


def test_shared_context_reuses_embeddings(pool):
    ctx = FilterContext(seed=0, embedder="tfidf")
    a = make_filter("kcenter").select(pool, 5, ctx)
    assert len(ctx._emb_cache) == 1
    b = make_filter("kmeans").select(pool, 5, ctx)
    assert len(ctx._emb_cache) == 1 and len(a.indices) == len(b.indices) == 5
    with pytest.raises(DamocError, match="FilterContext"):
        run_filter("kcenter", pool, 5, ctx=ctx, embedder="tfidf")
