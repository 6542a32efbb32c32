"""Test-only pause points for the kill tests: put this folder first on PYTHONPATH and set DAMOC_PAUSE_AT.

A `damoc select` parent and its workers inherit the variable; the process that reaches the named point
writes ``DAMOC_PAUSE_MARKER`` (its pid and the point) and sleeps, so the test can SIGKILL the select parent
at a known place. A worker paused this way must die with its parent; if it does not, it is still asleep
when the test looks for orphans.

Points: ``data`` (the parent, in the data stages), ``unit:<candidate substring>:<n>`` (a worker of that
candidate, as its n-th unit loads the model), ``score:<candidate substring>:<n>`` (a worker of that
candidate, at its n-th scoring call). Workers run as ``python -m damoc.select.worker`` (``__main__``), so
their points are on the functions they import at call time.
Nothing here is imported unless the variable is set.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import time

POINT = os.environ.get("DAMOC_PAUSE_AT", "")
MARKER = os.environ.get("DAMOC_PAUSE_MARKER", "")


def _pause(where: str) -> None:
    tmp = MARKER + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()} {where}\n")
    os.replace(tmp, MARKER)
    time.sleep(120)


_state = {"loads": 0, "scores": 0, "candidate": ""}


def _in_worker() -> bool:
    return bool(sys.argv) and sys.argv[0].endswith(os.path.join("select", "worker.py"))


def _matches(kind: str, count: int) -> bool:
    want, _, rest = POINT.partition(":")
    cand, _, n = rest.partition(":")
    return want == kind and _in_worker() and cand in _state["candidate"] and str(count) == n


def _patch_pipeline(mod) -> None:
    original = mod.prepare_data

    def prepare_data(*args, **kwargs):
        if POINT == "data":
            _pause("data")
        return original(*args, **kwargs)

    mod.prepare_data = prepare_data


def _patch_arch(mod) -> None:
    original = mod.load_model

    def load_model(name, *args, **kwargs):
        _state["loads"] += 1
        _state["candidate"] = str(name)
        if _matches("unit", _state["loads"]):
            _pause(f"unit {name} #{_state['loads']}")
        return original(name, *args, **kwargs)

    mod.load_model = load_model


def _patch_scoring(mod) -> None:
    original = mod.score_examples

    def score_examples(*args, **kwargs):
        _state["scores"] += 1
        if _matches("score", _state["scores"]):
            _pause(f"score {_state['candidate']} #{_state['scores']}")
        return original(*args, **kwargs)

    mod.score_examples = score_examples


PATCHES = {
    "damoc.select.pipeline": _patch_pipeline,
    "damoc.model.arch": _patch_arch,
    "damoc.evaluate.scoring": _patch_scoring,
}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, patch):
        self.inner, self.patch = inner, patch

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        patch = PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, patch)
        return spec


if POINT and MARKER:
    sys.meta_path.insert(0, _Finder())
