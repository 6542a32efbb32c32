"""Bad inputs for every command, one per (command, class), and the workspace they refer to.

Shared by tests/test_bad_inputs.py (in-process, every case) and benchmarks/robustness.py (each case as
a separate `damoc` process, as a user runs it). A case is ``(command, class, args, expected)``: the
command line (``{name}`` placeholders are workspace paths), the bad-input class, and a phrase the one-line
error must contain (so a case rejected for another reason than the one it tests does not pass).

Classes: missing input, empty input, malformed input, read-only output (a directory the user cannot write),
output under a file, directory-as-file (and file-as-directory), broken model (a config whose hidden_size
does not match the weights, a truncated safetensors file), out-of-range numbers, unknown field (a field
mapping naming no column), unknown key (YAML) or unknown option.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

CLASSES = (
    "missing",
    "empty",
    "malformed",
    "read-only output",
    "output under a file",
    "directory-as-file",
    "broken model",
    "out-of-range number",
    "unknown field",
    "unknown key",
)


def _rows(n: int = 24) -> list[dict]:
    out = []
    for i in range(n):
        lab = ["yes", "no"][i % 2]
        out.append(
            {
                "id": f"q{i}",
                "question": f"Does drug {i} lower blood pressure in group {i % 4}?",
                "context": f"A study of {30 + i} adults found drug {i} changed pressure in group {i % 4}.",
                "answer": f"{lab}, it did for drug {i}.",
                "label": lab,
                "domain": ["med", "law"][i % 2],
            }
        )
    return out


def _yaml(path: Path, data: dict) -> str:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def build_workspace(root: Path, model_dir: Path) -> dict[str, str]:
    """Input files, broken models, a read-only directory and job files under ``root``; returns the names
    the cases use. ``model_dir`` is a tiny working model (copied in)."""
    from damoc.testing import save_tiny_model

    root.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    good = root / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "empty.jsonl").write_text("")
    (root / "malformed.jsonl").write_text('{"question": "a", "answer": \n')
    (root / "afile").write_text("a regular file\n")
    (root / "adir").mkdir()
    (root / "adir" / "keep.txt").write_text("an existing directory with a file in it\n")
    (root / "ro").mkdir()
    (root / "calib.txt").write_text("\n\n".join(r["context"] for r in rows))
    model = root / "model"
    if not model.exists():
        shutil.copytree(model_dir, model)
    hidden = root / "broken_hidden"  # config.json says hidden_size 48, the weights are 32 wide
    shutil.copytree(model, hidden)
    cfg = json.loads((hidden / "config.json").read_text())
    cfg["hidden_size"] = cfg["hidden_size"] + 16
    (hidden / "config.json").write_text(json.dumps(cfg))
    trunc = root / "broken_trunc"  # the safetensors file cut in half
    shutil.copytree(model, trunc)
    st = trunc / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    del save_tiny_model
    names = {k: str(root / k) for k in ("good.jsonl", "empty.jsonl", "malformed.jsonl", "calib.txt")}
    names.update(
        good=str(good),
        empty=str(root / "empty.jsonl"),
        malformed=str(root / "malformed.jsonl"),
        nope=str(root / "nope.jsonl"),
        afile=str(root / "afile"),
        adir=str(root / "adir"),
        ro=str(root / "ro"),
        model=str(model),
        hidden=str(hidden),
        trunc=str(trunc),
        root=str(root),
    )
    sel = {
        "job": "select",
        "task": {"path": str(good), "dev_size": 6},
        "candidates": [str(model)],
        "data": {"filter": "random", "budget": 4, "compress_rate": None},
        "model": {"layer_fraction": 0.0},
        "proxy": {"max_steps": 1, "max_length": 64},
        "eval": {"dev_rows": 4, "max_length": 64},
        "run": {"run_dir": str(root / "run_unused")},
    }
    names["select_unknown_key"] = _yaml(root / "select_unknown_key.yaml", {**sel, "modle": {}})
    names["select_bad_number"] = _yaml(
        root / "select_bad_number.yaml", {**sel, "proxy": {"max_steps": 0, "max_length": 64}}
    )
    names["select_missing_task"] = _yaml(
        root / "select_missing_task.yaml", {**sel, "task": {"path": str(root / "nope.jsonl")}}
    )
    names["select_missing_model"] = _yaml(
        root / "select_missing_model.yaml", {**sel, "candidates": [str(root / "no_model")]}
    )
    names["select_unknown_field"] = _yaml(
        root / "select_unknown_field.yaml",
        {**sel, "task": {"path": str(good), "dev_size": 6, "fields": {"context": "passage"}}},
    )
    names["select_key_env"] = _yaml(
        root / "select_key_env.yaml",
        {
            **sel,
            "data": {
                "filter": "random",
                "budget": 4,
                "compress_rate": None,
                "rewrite": True,
                "rewrite_options": {"endpoint": "http://127.0.0.1:9/v1", "api_key_env": "DATABASE_PASSWORD"},
            },
        },
    )
    (root / "empty.yaml").write_text("")
    (root / "malformed.yaml").write_text("job: select\ntask: [unclosed\n")
    names["empty_yaml"] = str(root / "empty.yaml")
    names["malformed_yaml"] = str(root / "malformed.yaml")
    prune = {"job": "prune-layers", "model": str(model), "data": str(good), "out": str(root / "p_out")}
    names["prune_unknown_key"] = _yaml(root / "prune_unknown_key.yaml", {**prune, "fractoin": 0.25})
    names["prune_bad_number"] = _yaml(root / "prune_bad_number.yaml", {**prune, "fraction": 1.5})
    cur = {
        "job": "curate",
        "pool": str(good),
        "seeds": str(good),
        "out": str(root / "c_out.jsonl"),
        "method": "tfidf",
        "compare": [],
        "top": 4,
    }
    names["curate_unknown_key"] = _yaml(root / "curate_unknown_key.yaml", {**cur, "topp": 3})
    fs = {
        "job": "finescope",
        "model": str(model),
        "pool": str(good),
        "seeds": str(good),
        "eval": str(good),
        "out": str(root / "fs_out"),
    }
    names["fs_unknown_key"] = _yaml(root / "fs_unknown_key.yaml", {**fs, "prnue": {}})
    names["fs_bad_number"] = _yaml(root / "fs_bad_number.yaml", {**fs, "prune": {"ratio": 1.5}})
    names["fs_missing"] = _yaml(root / "fs_missing.yaml", {**fs, "pool": str(root / "nope.jsonl")})
    names["fs_empty"] = _yaml(root / "fs_empty.yaml", {**fs, "pool": str(root / "empty.jsonl")})
    names["fs_malformed"] = _yaml(root / "fs_malformed.yaml", {**fs, "pool": str(root / "malformed.jsonl")})
    names["fs_hidden"] = _yaml(root / "fs_hidden.yaml", {**fs, "model": str(hidden)})
    return names


# --- the cases ---------------------------------------------------------------------------------------

SEL = ["select", "-t", "{good}", "-c", "{model}", "--no-compress", "--budget", "4", "--dev-size", "6"]
SEL += ["--dev-rows", "4", "--layer-fraction", "0", "--max-steps", "1"]
FILTER = ["filter", "{good}", "-m", "random", "--budget", "4"]
COMPRESS = ["compress", "{good}", "--scorer", "{model}", "--no-fidelity"]
REWRITE = ["rewrite", "{good}", "--original", "{good}", "--rewriter", "{model}"]
SCORE = ["layers", "score", "{model}", "--data", "{good}", "--samples", "4", "--length", "16"]
PRUNE = [
    "prune",
    "layers",
    "{model}",
    "--data",
    "{good}",
    "--fraction",
    "0.25",
    "--samples",
    "4",
    "--length",
    "16",
]
CALIB = ["prune", "calibrated", "{model}", "--domain", "{good}", "--general", "none", "--alpha", "1"]
CALIB += ["--samples", "2", "--length", "16"]
QUANT = ["quantize", "{model}", "--domain", "{good}", "--general", "none", "--alpha", "1"]
QUANT += ["--samples", "2", "--length", "16", "--group-size", "16"]
EVAL = ["eval", "{model}", "--general", "none", "--domain", "{good}", "--samples", "2", "--length", "16"]
EVAL += ["--task-samples", "2"]
CURATE = [
    "curate",
    "--pool",
    "{good}",
    "--seeds",
    "{good}",
    "--method",
    "tfidf",
    "--compare",
    "",
    "--top",
    "4",
]
STRUCT = ["prune", "structured", "{model}", "--data", "{good}", "--samples", "2", "--max-length", "16"]
DISTILL = ["distill", "--teacher", "{model}", "--student", "{model}", "--data", "{good}", "--max-steps", "1"]
DISTILL += ["--max-rows", "2", "--max-new-tokens", "2"]


def _with(base: list[str], *extra: str, replace: dict[str, str] | None = None) -> list[str]:
    """``base`` with whole arguments replaced and ``extra`` appended (a repeated option: the last wins)."""
    args = [(replace or {}).get(a, a) for a in base]
    return [*args, *extra]


Case = tuple[str, str, list[str], str]
BROKEN = {"hidden": "config.json", "trunc": "safetensors"}  # the broken model and the phrase naming it


def _inputs(cmd: str, base: list[str], *out: str, malformed: str = "JSON") -> list[Case]:
    """The input file missing, empty and malformed (``out``: the output options the command line needs)."""
    return [
        (cmd, "missing", _with(base, *out, replace={"{good}": "{nope}"}), "does not exist"),
        (cmd, "empty", _with(base, *out, replace={"{good}": "{empty}"}), "no rows"),
        (cmd, "malformed", _with(base, *out, replace={"{good}": "{malformed}"}), malformed),
    ]


def _outputs(cmd: str, base: list[str], flag: str, name: str, is_dir: bool) -> list[Case]:
    """The output ``name`` (a directory where ``is_dir``, else a file) in a read-only directory, under a
    regular file, and given as a path of the other kind (a directory for a file, a file for a directory)."""
    wrong, phrase = ("{afile}", "not a directory") if is_dir else ("{adir}", "is a directory")
    return [
        (cmd, "read-only output", _with(base, flag, "{ro}/" + name), "not writable"),
        (cmd, "output under a file", _with(base, flag, "{afile}/" + name), "is a file"),
        (cmd, "directory-as-file", _with(base, flag, wrong), phrase),
    ]


def _broken(cmd: str, base: list[str], *out: str, models: tuple[str, ...]) -> list[Case]:
    """The model replaced by each of the broken ``models`` (keys of ``BROKEN``)."""
    return [
        (cmd, "broken model", _with(base, *out, replace={"{model}": "{" + m + "}"}), BROKEN[m])
        for m in models
    ]


def _files(cmd: str, base: list[str], flag: str, name: str, is_dir: bool, **kw) -> list[Case]:
    """``_inputs`` then ``_outputs`` for a command that writes ``flag {root}/name``."""
    return [*_inputs(cmd, base, flag, "{root}/" + name, **kw), *_outputs(cmd, base, flag, name, is_dir)]


CASES: list[Case] = [
    # select
    *_files("select", SEL, "-o", "r", True, malformed="not valid JSON"),
    ("select", "out-of-range number", _with(SEL, "-o", "{root}/r", "--max-steps", "0"), "greater than"),
    ("select", "out-of-range number", _with(SEL, "-o", "{root}/r", "--max-steps", "-1"), "greater than"),
    ("select", "out-of-range number", _with(SEL, "-o", "{root}/r", "--epochs", "-1"), "greater than"),
    ("select", "out-of-range number", _with(SEL, "-o", "{root}/r", "--budget", "-1"), "budget"),
    ("select", "out-of-range number", _with(SEL, "-o", "{root}/r", "--jobs", "0"), "jobs"),
    ("select", "unknown field", _with(SEL, "-o", "{root}/r", "--context-field", "passage"), "not a column"),
    ("select", "unknown key", ["select", "{select_unknown_key}"], "unknown key"),
    ("select", "unknown key", ["select", "{select_key_env}"], "DATABASE_PASSWORD"),
    ("select", "unknown key", _with(SEL, "--no-such-flag"), "No such option"),
    # validate
    ("validate", "missing", ["validate", "{root}/nope.yaml"], "does not exist"),
    ("validate", "missing", ["validate", "{select_missing_task}"], "does not exist"),
    ("validate", "missing", ["validate", "{select_missing_model}"], "not a model directory"),
    ("validate", "empty", ["validate", "{empty_yaml}"], "mapping"),
    ("validate", "malformed", ["validate", "{malformed_yaml}"], "not valid YAML"),
    ("validate", "out-of-range number", ["validate", "{select_bad_number}"], "greater than"),
    ("validate", "out-of-range number", ["validate", "{prune_bad_number}"], "fraction"),
    ("validate", "unknown field", ["validate", "{select_unknown_field}"], "not a column"),
    ("validate", "unknown key", ["validate", "{select_unknown_key}"], "unknown key"),
    ("validate", "unknown key", ["validate", "{select_key_env}"], "DATABASE_PASSWORD"),
    # filter
    *_files("filter", FILTER, "-o", "f.jsonl", False),
    (
        "filter",
        "broken model",
        _with(
            FILTER, "-o", "{root}/f.jsonl", "--reference-model", "{hidden}", replace={"random": "perplexity"}
        ),
        "cannot load",
    ),
    ("filter", "out-of-range number", _with(FILTER, "-o", "{root}/f.jsonl", "--seed", "-1"), "greater than"),
    ("filter", "out-of-range number", _with(FILTER, "-o", "{root}/f.jsonl", "--budget", "-4"), "budget"),
    (
        "filter",
        "unknown field",
        _with(FILTER, "-o", "{root}/f.jsonl", "--context-field", "passage"),
        "not a column",
    ),
    ("filter", "unknown key", _with(FILTER, "-o", "{root}/f.jsonl", "-O", "nosuch=1"), "nosuch"),
    # compress
    *_files("compress", COMPRESS, "-o", "c.jsonl", False),
    *_broken("compress", COMPRESS, "-o", "{root}/c.jsonl", models=("trunc",)),
    ("compress", "out-of-range number", _with(COMPRESS, "-o", "{root}/c.jsonl", "--rate", "1.5"), "rate"),
    ("compress", "out-of-range number", _with(COMPRESS, "-o", "{root}/c.jsonl", "--limit", "0"), "limit"),
    (
        "compress",
        "unknown field",
        _with(COMPRESS, "-o", "{root}/c.jsonl", "--context-field", "passage"),
        "not a column",
    ),
    ("compress", "unknown key", _with(COMPRESS, "-o", "{root}/c.jsonl", "--no-such-flag"), "No such option"),
    # rewrite
    *_files("rewrite", REWRITE, "-o", "w.jsonl", False),
    *_broken("rewrite", REWRITE, "-o", "{root}/w.jsonl", models=("hidden",)),
    ("rewrite", "out-of-range number", _with(REWRITE, "-o", "{root}/w.jsonl", "--tau", "2"), "tau"),
    (
        "rewrite",
        "out-of-range number",
        _with(REWRITE, "-o", "{root}/w.jsonl", "--max-rounds", "0"),
        "max_rounds",
    ),
    (
        "rewrite",
        "unknown field",
        _with(REWRITE, "-o", "{root}/w.jsonl", "--label-field", "verdict"),
        "not a column",
    ),
    ("rewrite", "unknown key", _with(REWRITE, "-o", "{root}/w.jsonl", "--no-such-flag"), "No such option"),
    # layers score (writes to stdout unless --out is given)
    *_inputs("layers score", SCORE),
    *_outputs("layers score", SCORE, "--out", "s.json", False),
    ("layers score", "directory-as-file", _with(SCORE, "--out", "{afile}"), "exists"),
    *_broken("layers score", SCORE, models=("hidden", "trunc")),
    ("layers score", "out-of-range number", _with(SCORE, "--block", "0"), "--block"),
    ("layers score", "unknown key", _with(SCORE, "--no-such-flag"), "No such option"),
    # prune layers
    *_files("prune layers", PRUNE, "--out", "p", True),
    *_broken("prune layers", PRUNE, "--out", "{root}/p", models=("hidden", "trunc")),
    (
        "prune layers",
        "out-of-range number",
        _with(PRUNE, "--out", "{root}/p", replace={"0.25": "1.5"}),
        "fraction",
    ),
    (
        "prune layers",
        "out-of-range number",
        ["prune", "layers", "--config", "{prune_bad_number}"],
        "fraction",
    ),
    ("prune layers", "unknown key", ["prune", "layers", "--config", "{prune_unknown_key}"], "unknown key"),
    # prune calibrated
    *_files("prune calibrated", CALIB, "--out", "pc", True),
    *_broken("prune calibrated", CALIB, "--out", "{root}/pc", models=("hidden",)),
    (
        "prune calibrated",
        "out-of-range number",
        _with(CALIB, "--out", "{root}/pc", "--sparsity", "1.5"),
        "sparsity",
    ),
    ("prune calibrated", "out-of-range number", _with(CALIB, "--out", "{root}/pc", "--alpha", "2"), "alpha"),
    ("prune calibrated", "unknown key", _with(CALIB, "--out", "{root}/pc", "-m", "nosuch"), "nosuch"),
    # quantize
    *_files("quantize", QUANT, "--out", "q", True),
    *_broken("quantize", QUANT, "--out", "{root}/q", models=("trunc",)),
    ("quantize", "out-of-range number", _with(QUANT, "--out", "{root}/q", "--bits", "5"), "bits"),
    ("quantize", "unknown key", _with(QUANT, "--out", "{root}/q", "--no-such-flag"), "No such option"),
    # eval (writes to stdout unless -o is given)
    *_inputs("eval", EVAL),
    *_outputs("eval", EVAL, "-o", "e.json", False),
    ("eval", "directory-as-file", _with(EVAL, "-o", "{afile}"), "exists"),
    *_broken("eval", EVAL, models=("hidden", "trunc")),
    ("eval", "out-of-range number", _with(EVAL, "--dev-size", "1.5"), "dev_size"),
    ("eval", "out-of-range number", _with(EVAL, "--task-samples", "0"), "task_samples"),
    ("eval", "missing", ["eval", "{model}", "--general", "none"], "nothing to evaluate"),
    ("eval", "unknown key", _with(EVAL, "--no-such-flag"), "No such option"),
    # curate
    *_files("curate", CURATE, "-o", "k.jsonl", False),
    (
        "curate",
        "broken model",
        _with(
            CURATE,
            "-o",
            "{root}/k.jsonl",
            "--model",
            "{hidden}",
            "--sae-steps",
            "1",
            replace={"tfidf": "sae"},
        ),
        "config.json",
    ),
    ("curate", "out-of-range number", _with(CURATE, "-o", "{root}/k.jsonl", "--top", "0"), "top"),
    ("curate", "unknown key", ["curate", "--job", "{curate_unknown_key}"], "unknown key"),
    # prune structured
    *_files("prune structured", STRUCT, "-o", "ps", True),
    *_broken("prune structured", STRUCT, "-o", "{root}/ps", models=("trunc",)),
    ("prune structured", "out-of-range number", _with(STRUCT, "-o", "{root}/ps", "--ratio", "1.5"), "ratio"),
    (
        "prune structured",
        "out-of-range number",
        _with(STRUCT, "-o", "{root}/ps", "--samples", "0"),
        "samples",
    ),
    ("prune structured", "unknown key", _with(STRUCT, "-o", "{root}/ps", "--importance", "nosuch"), "nosuch"),
    # distill
    *_files("distill", DISTILL, "-o", "d", True),
    *_broken("distill", DISTILL, "-o", "{root}/d", models=("hidden",)),
    ("distill", "out-of-range number", _with(DISTILL, "-o", "{root}/d", "--lr", "-1"), "greater than"),
    ("distill", "out-of-range number", _with(DISTILL, "-o", "{root}/d", "--epochs", "-1"), "greater than"),
    ("distill", "out-of-range number", _with(DISTILL, "-o", "{root}/d", "--max-steps", "0"), "greater than"),
    ("distill", "out-of-range number", _with(DISTILL, "-o", "{root}/d", "--max-rows", "0"), "max-rows"),
    ("distill", "unknown key", _with(DISTILL, "-o", "{root}/d", "--teacher-mode", "nosuch"), "teacher_mode"),
    # finescope
    ("finescope", "missing", ["finescope", "{root}/nope.yaml"], "does not exist"),
    ("finescope", "missing", ["finescope", "{fs_missing}"], "does not exist"),
    ("finescope", "empty", ["finescope", "{fs_empty}"], "no rows"),
    ("finescope", "empty", ["finescope", "{empty_yaml}"], "mapping"),
    ("finescope", "malformed", ["finescope", "{fs_malformed}"], "JSON"),
    ("finescope", "malformed", ["finescope", "{malformed_yaml}"], "not valid YAML"),
    ("finescope", "read-only output", ["finescope", "{fs_missing}", "-o", "{ro}/fs"], "not writable"),
    ("finescope", "output under a file", ["finescope", "{fs_missing}", "-o", "{afile}/fs"], "is a file"),
    ("finescope", "directory-as-file", ["finescope", "{fs_missing}", "-o", "{afile}"], "not a directory"),
    ("finescope", "broken model", ["finescope", "{fs_hidden}"], "config.json"),
    ("finescope", "out-of-range number", ["finescope", "{fs_bad_number}"], "ratio"),
    ("finescope", "unknown key", ["finescope", "{fs_unknown_key}"], "unknown key"),
    # zoo
    ("zoo fetch", "missing", ["zoo", "fetch", "no-such-model"], "unknown model"),
    ("zoo fetch", "unknown key", ["zoo", "fetch", "smollm2-135m", "--dtype", "int3"], "dtype"),
    ("zoo path", "missing", ["zoo", "path", "no-such-model"], "unknown model"),
]


def expand(args: list[str], names: dict[str, str]) -> list[str]:
    """The command line with ``{name}`` placeholders filled in."""
    out = []
    for a in args:
        for key, value in names.items():
            a = a.replace("{" + key + "}", value)
        out.append(a)
    return out


def snapshot(root: str | Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (to tell that nothing was written)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out
