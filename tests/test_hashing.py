"""One hashing scheme (damoc.io.hashing) behind every fingerprint and cache key, with pinned outputs.

The literals below are what these functions returned before they shared one implementation: a
changed value would orphan the ground-truth records already computed (benchmarks/records/selection/
groundtruth/ is named by these keys) and make resumed runs redo finished work.
"""

import hashlib
import json

from damoc.evaluate.scoring import EvalConfig
from damoc.io.hashing import DIGEST_CHARS, bytes_digest, digest, rows_digest
from damoc.io.tasks import Example, Task, examples_fingerprint
from damoc.select.cache import GROUND_TRUTH_KEY_CHARS, candidate_identity, ground_truth_key
from damoc.select.config import config_hash
from damoc.train.finetune import FinetuneConfig

ROWS = [
    Example(id="a", question="Is it?", context="It is.", answer="yes", label="yes"),
    Example(id="b", question="Who?", context=None, answer="Ann", label=None),
]


def test_digest_is_sha256_of_canonical_json():
    value = {"b": [1.5, "x"], "a": 1}
    full = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    assert digest(value) == full[:DIGEST_CHARS] and digest(value, 24) == full[:24]
    assert digest({"a": 1, "b": [1.5, "x"]}) == digest(value)  # key order does not matter
    assert rows_digest([[1], [2]]) != rows_digest([[2], [1]])  # row order does
    assert bytes_digest([b"ab", b"c"]) == bytes_digest([b"abc"])


def test_fingerprints_and_keys_keep_their_values():
    assert Task(name="t", train=ROWS[:1], dev=ROWS[1:]).fingerprint() == "6ff73b2ffb35facd"
    assert examples_fingerprint(ROWS) == "4d4c560e1118c51e"
    assert config_hash({"a": 1, "b": [1.5, "x"]}) == "d8ac2b91c6c518a8"
    ft = FinetuneConfig(
        method="full", epochs=1.0, max_steps=None, token_budget=None, batch_size=4, max_length=256, lr=5e-5,
        weight_decay=0.0, warmup_ratio=0.05, grad_clip=1.0, lora_r=8, lora_alpha=16, lora_dropout=0.0,
        lora_targets="all-linear", add_eos=True, seed=0,
    )  # fmt: skip
    ev = EvalConfig(
        metric="answer_bpb", max_length=256, max_new_tokens=32, stop_at_newline=True, alias_field=None
    )
    key = ground_truth_key(ROWS[:1], ROWS[1:], "smollm2-135m", ft, ev, "answer")
    assert key == "1df55502596898e18f3db8ed" and len(key) == GROUND_TRUTH_KEY_CHARS


def test_candidate_identity_of_a_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(b"0123456789")
    assert candidate_identity(str(tmp_path)) == "dir:27a14c1083d902f9"
    assert candidate_identity("SmolLM2-135M ") == "zoo:smollm2-135m"
