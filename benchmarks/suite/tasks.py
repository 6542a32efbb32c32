"""The selection suite's tasks: where each comes from, its metric, and its fixed train/dev split.

Each task is written once as two JSONL files (``train.jsonl``, ``dev.jsonl``) in the data cache
(``~/.cache/damoc/data/suite/<task>/``), made deterministically from its source: the two tasks bundled
with damoc (PubMedQA, TAT-QA finance) or one JSON file of the PyPI sdist ``bigbench==1.0.0`` (downloaded
once, never installed). Rows are shuffled with a fixed seed; the first ``dev`` rows are the dev split and
the next ``train`` rows the training split, so every method and the ground truth see the same rows.

Row layout (damoc's task format): ``question``, optional ``context``, ``answer`` (the text the model is
trained and scored on), optional ``label`` (classification tasks: the answer itself, one of few labels),
optional ``options`` (multiple choice: the example's own options, the answer among them) and
``aliases`` (other accepted answers for EM/F1).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

BIGBENCH = "bigbench==1.0.0"
BIGBENCH_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
BB_ROOT = "bigbench/benchmark_tasks/"
SPLIT_SEED = 0
XSUM_WORDS = (
    150  # the article's first words: the summary follows the lead, and the prompt is cut from the left
)


@dataclass(frozen=True)
class SuiteTask:
    """One task of the suite."""

    name: str
    domain: str
    metric: str  # the task metric users choose by; answer_bpb is scored beside it
    train: int  # training rows (the ground truth fine-tunes on all of them)
    dev: int  # dev rows (scored by every method and the ground truth)
    source: str  # where the rows come from
    license: str  # the original dataset's license
    build: Callable[[], list[dict]] = field(repr=False, compare=False)
    eval: dict = field(default_factory=dict, compare=False)  # task-specific eval settings

    @property
    def long(self) -> bool:
        return self.eval.get("max_length", 256) > 128


def data_cache() -> Path:
    return Path(os.environ.get("DAMOC_DATA_CACHE", Path.home() / ".cache" / "damoc" / "data"))


# --- sources -----------------------------------------------------------------------------------------


def bigbench_sdist() -> Path:
    """The bigbench sdist in the data cache, downloaded there once with pip (no install) or from the index."""
    path = data_cache() / "bigbench-1.0.0.tar.gz"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", BIGBENCH, "-d"]
    subprocess.run([*cmd, str(path.parent)], check=False, capture_output=True)
    if not path.is_file():
        _download_from_index(path)  # pip >= 25 refuses this sdist (a direct-URL dependency in its metadata)
    if not path.is_file():
        raise SystemExit(f"could not download {BIGBENCH}; put bigbench-1.0.0.tar.gz into {path.parent}")
    return path


def _download_from_index(path: Path) -> None:
    import urllib.request

    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        page = urllib.request.urlopen(f"{index}/bigbench/", timeout=60).read().decode()
        link = re.search(r'href="([^"]*/bigbench-1\.0\.0\.tar\.gz)#sha256=([0-9a-f]{64})', page)
        if link is None or link.group(2) != BIGBENCH_SHA256:
            return
        data = urllib.request.urlopen(link.group(1), timeout=300).read()
    except OSError as err:
        print(f"index download failed: {err}", file=sys.stderr)
        return
    if hashlib.sha256(data).hexdigest() == BIGBENCH_SHA256:
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)


@cache
def bigbench_json(member: str) -> dict:
    """One JSON file of the bigbench sdist, by its path under ``bigbench/benchmark_tasks/``."""
    with tarfile.open(bigbench_sdist()) as tar:
        found = next(m for m in tar.getmembers() if m.name.endswith(BB_ROOT + member))
        return json.load(tar.extractfile(found))  # type: ignore[arg-type]


def bundled(name: str) -> list[dict]:
    from damoc.io.tasks import builtin_path

    with builtin_path(name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --- row builders ------------------------------------------------------------------------------------


def _pubmedqa() -> list[dict]:
    # classification: the answer is the yes/no/maybe label (the long answer stays out of the prompt)
    return [
        {
            "id": r["id"],
            "question": r["question"],
            "context": r["context"],
            "answer": r["label"],
            "label": r["label"],
        }
        for r in bundled("pubmedqa")
    ]


def _finance() -> list[dict]:
    rows = []
    for r in bundled("finance"):
        spans = [s for s in r.get("answer_spans") or [] if s and s != r["answer"]]
        rows.append(
            {
                "id": r["id"],
                "question": r["question"],
                "context": r["context"],
                "answer": r["answer"],
                "aliases": spans,
            }
        )
    return rows


def _squad() -> list[dict]:
    data = bigbench_json("squad_shifts/squaddev_v1.1.json")
    rows = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                texts = [a["text"] for a in qa["answers"]]
                rows.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": para["context"],
                        "answer": texts[0],
                        "aliases": sorted(set(texts) - {texts[0]}),
                    }
                )
    return rows


def _xsum() -> list[dict]:
    return [
        {
            "id": f"xsum-{i}",
            "question": "Summarize the news article in one sentence.",
            "context": " ".join(ex["input"].split()[:XSUM_WORDS]),
            "answer": ex["target"] if isinstance(ex["target"], str) else ex["target"][0],
        }
        for i, ex in enumerate(bigbench_json("gem/xsum/task.json")["examples"])
    ]


def _wikidata() -> list[dict]:
    rows = []
    for i, ex in enumerate(bigbench_json("qa_wikidata/task.json")["examples"]):
        targets = [ex["target"]] if isinstance(ex["target"], str) else list(ex["target"])
        rows.append(
            {"id": f"wikidata-{i}", "question": ex["input"], "answer": targets[0], "aliases": targets[1:]}
        )
    return rows


def _gold(ex: dict) -> str:
    (gold,) = [k for k, v in ex["target_scores"].items() if v == 1]
    return gold


def _choice_rows(member: str, prefix: str, question: Callable[[str], str], label: bool) -> list[dict]:
    """Rows of a BIG-bench multiple-choice task: the correct option is the answer; with ``label`` the task's
    fixed options are its labels (label_acc), otherwise each row keeps its own options (option_acc)."""
    rows = []
    for i, ex in enumerate(bigbench_json(member)["examples"]):
        gold = _gold(ex)
        row = {"id": f"{prefix}-{i}", "question": question(ex["input"].strip()), "answer": gold}
        if label:
            row["label"] = gold
        else:
            row["options"] = list(ex["target_scores"])
        rows.append(row)
    return rows


def _fever() -> list[dict]:
    return _choice_rows("fact_checker/fever/task.json", "fever", lambda q: q, label=True)


def _social_iqa() -> list[dict]:
    return _choice_rows("social_iqa/task.json", "siqa", lambda q: q, label=False)


def _sports() -> list[dict]:
    return _choice_rows(
        "sports_understanding/task.json",
        "sports",
        lambda q: f"Is the following statement plausible or implausible? {q}",
        label=True,
    )


def _strategyqa() -> list[dict]:
    return _choice_rows("strategyqa/task.json", "strategyqa", lambda q: q, label=True)


INTENTS = "add_to_playlist, book_restaurant, get_weather, play_music, search_screening_event, search_creative_work, rate_book"


def _intent() -> list[dict]:
    return _choice_rows(
        "intent_recognition/task.json",
        "intent",
        lambda q: f"Which intent does the utterance express ({INTENTS})? {q.removeprefix('Utterance: ')}",
        label=True,
    )


def _math_qa() -> list[dict]:
    return _choice_rows(
        "elementary_math_qa/question_only/task.json",
        "mathqa",
        lambda q: f"What is the answer to the following math word problem? {q}",
        label=False,
    )


def _wikihow() -> list[dict]:
    return _choice_rows("goal_step_wikihow/goal_inference/task.json", "wikihow", lambda q: q, label=False)


BB = "BIG-bench 1.0.0 sdist (Apache-2.0), "
SHORT = {"max_length": 128}
TASKS: dict[str, SuiteTask] = {
    t.name: t
    for t in [
        SuiteTask(
            "pubmedqa", "medical", "label_acc", 300, 200, "damoc bundled PubMedQA PQA-L", "MIT", _pubmedqa
        ),
        SuiteTask(
            "finance", "finance", "f1", 300, 200, "damoc bundled TAT-QA dev subset", "CC BY 4.0", _finance
        ),
        SuiteTask(
            "squad",
            "reading comprehension",
            "f1",
            300,
            200,
            BB + "squad_shifts/squaddev_v1.1",
            "CC BY-SA 4.0",
            _squad,
        ),
        SuiteTask(
            "xsum",
            "news summarization",
            "rouge_l",
            300,
            200,
            BB + "gem/xsum",
            "research use (BBC articles, XSum)",
            _xsum,
            {"max_new_tokens": 48},
        ),
        SuiteTask(
            "wikidata",
            "general knowledge",
            "exact_match",
            900,
            200,
            BB + "qa_wikidata",
            "CC BY-SA 3.0 (Wikidata: CC0)",
            _wikidata,
            {**SHORT, "max_new_tokens": 16},
        ),
        SuiteTask(
            "fever",
            "fact verification",
            "label_acc",
            900,
            200,
            BB + "fact_checker/fever",
            "CC BY-SA 3.0",
            _fever,
            SHORT,
        ),
        SuiteTask(
            "social_iqa",
            "social commonsense",
            "option_acc",
            300,
            200,
            BB + "social_iqa",
            "CC BY 4.0",
            _social_iqa,
            SHORT,
        ),
        SuiteTask(
            "sports",
            "sports",
            "label_acc",
            300,
            200,
            BB + "sports_understanding",
            "Apache-2.0",
            _sports,
            SHORT,
        ),
        SuiteTask(
            "strategyqa",
            "multi-step reasoning",
            "label_acc",
            300,
            200,
            BB + "strategyqa",
            "MIT",
            _strategyqa,
            SHORT,
        ),
        SuiteTask(
            "intent",
            "dialogue intents",
            "label_acc",
            400,
            200,
            BB + "intent_recognition (SNIPS)",
            "CC0 1.0",
            _intent,
            SHORT,
        ),
        SuiteTask(
            "math_qa",
            "math word problems",
            "option_acc",
            900,
            200,
            BB + "elementary_math_qa/question_only",
            "Apache-2.0",
            _math_qa,
            SHORT,
        ),
        SuiteTask(
            "wikihow",
            "procedures (how-to)",
            "option_acc",
            900,
            200,
            BB + "goal_step_wikihow/goal_inference",
            "CC BY-NC-SA 3.0 (wikiHow text)",
            _wikihow,
            SHORT,
        ),
    ]
}


def task_dir(name: str) -> Path:
    return data_cache() / "suite" / name


def prepare(name: str) -> tuple[Path, Path]:
    """The task's (train.jsonl, dev.jsonl), written once into the data cache."""
    t = TASKS[name]
    out = task_dir(name)
    train, dev = out / "train.jsonl", out / "dev.jsonl"
    if train.is_file() and dev.is_file():
        return train, dev
    rows = t.build()
    if len(rows) < t.train + t.dev:
        raise SystemExit(f"task {name}: {len(rows)} rows, fewer than {t.train} train + {t.dev} dev")
    random.Random(SPLIT_SEED).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    for path, part in ((dev, rows[: t.dev]), (train, rows[t.dev : t.dev + t.train])):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        tmp.replace(path)
    return train, dev
