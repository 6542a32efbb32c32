"""Registries list their members as lazy ``module:object`` targets; every listed member exists."""

import subprocess
import sys

import pytest

from damoc.config import JOBS
from damoc.curate.curation import CURATORS
from damoc.data.filters import FAMILIES, FILTERS
from damoc.evaluate.metrics import METRICS
from damoc.model.calibrated import METHODS
from damoc.model.merge import MERGES
from damoc.model.structured.importance import IMPORTANCE
from damoc.registry import Entry, Registry
from damoc.select.backends.base import BACKENDS
from damoc.select.config import RunSettings
from damoc.zoo.registry import ZOO

ALL = {
    "filter": FILTERS,
    "merge": MERGES,
    "calibration": METHODS,
    "metric": METRICS,
    "curator": CURATORS,
    "importance": IMPORTANCE,
    "backend": BACKENDS,
    "job": JOBS,
    "zoo": ZOO,
}


def test_lazy_entry_loads_on_first_use_and_says_where():
    reg: Registry = Registry("widget", [Entry("Dumps", "json:dumps", family="codec")])
    entry = reg.entry("dumps")
    assert entry.where == "json:dumps" and entry.family == "codec"
    assert reg.names("codec") == ["dumps"] and "DUMPS" in reg
    import json

    assert reg.get("dumps") is json.dumps
    assert entry.help == json.dumps.__doc__.strip().splitlines()[0]
    reg.add("loads", json.loads)
    assert reg.entry("loads").where == "json:loads"
    with pytest.raises(ValueError, match="module:object"):
        Entry("bad", "json.dumps")
    with pytest.raises(ValueError, match="twice"):
        reg.add("dumps", "json:dumps")


def test_listing_names_imports_no_member_module():
    code = (
        "import sys\n"
        "from damoc.config import JOBS\n"
        "loaded = [e.where for e in JOBS.entries() if e.where.partition(':')[0] in sys.modules]\n"
        "from damoc.data.filters.base import FILTERS\n"
        "from damoc.model.merge.base import MERGES\n"
        "from damoc.model.calibrated.methods import METHODS\n"
        "names = FILTERS.names() + MERGES.names() + METHODS.names() + JOBS.names()\n"
        "assert len(names) == 12 + 4 + 5 + 9, names\n"
        "loaded += [e.where for r in (FILTERS, MERGES, METHODS) for e in r.entries()\n"
        "           if e.where.partition(':')[0] in sys.modules]\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_listed_member_loads_from_where_it_says(kind):
    for entry in ALL[kind].entries():
        obj = entry.obj
        module = entry.where.partition(":")[0]
        assert type(obj).__module__ == module or getattr(obj, "__module__", None) == module, entry
        assert entry.help, entry


def test_filter_classes_match_their_entries():
    for entry in FILTERS.entries():
        cls = entry.obj
        assert (cls.name, cls.family) == (entry.name, entry.family)
        assert entry.family in FAMILIES


def test_job_classes_match_their_entries():
    for entry in JOBS.entries():
        assert entry.obj.model_fields["job"].default == entry.name


def test_backends_build_from_run_settings():
    for entry in BACKENDS.entries():
        backend = entry.obj.from_run(RunSettings(jobs=2, timeout_s=5.0))
        assert (backend.jobs, backend.timeout_s) == (2, 5.0)
