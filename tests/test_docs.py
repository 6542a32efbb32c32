"""The docs stay true to the code: settings tables regenerate unchanged, every registered method has
a docs page, links resolve, job configs document themselves and every example job validates."""

import inspect
import re
from pathlib import Path

import pytest
import yaml

from damoc.config import JOBS, load_job, parse_config
from damoc.config_docs import docstring_fields, main, settings_table
from damoc.curate.curation import CURATORS
from damoc.data.filters import FILTERS
from damoc.evaluate.metrics import METRICS
from damoc.model.calibrated import METHODS
from damoc.model.merge import MERGES
from damoc.model.structured.importance import IMPORTANCE
from damoc.select.backends.base import BACKENDS
from damoc.zoo.registry import ZOO

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# each registry, and the page that documents its members
REGISTRY_PAGES = {
    "data_filters.md": FILTERS,
    "merging.md": MERGES,
    "calibrated.md": METHODS,
    "structured_pruning.md": IMPORTANCE,
    "finescope.md": CURATORS,
    "metrics.md": METRICS,
    "selection.md": BACKENDS,
    "jobs.md": JOBS,
    "zoo.md": ZOO,
}


def test_settings_tables_match_the_config_classes():
    # when this fails: python -m damoc.config_docs docs/*.md
    assert main(["--check", *map(str, PAGES)]) == 0


@pytest.mark.parametrize("page", sorted(REGISTRY_PAGES))
def test_every_registered_name_is_on_its_docs_page(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [n for n in REGISTRY_PAGES[page].names() if f"`{n}`" not in text]
    assert not missing, f"{page} does not document {missing}"


def test_docs_index_links_every_page_and_links_resolve():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name not in ("README.md",) and not page.name.startswith("_"):
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"
    for page in PAGES:
        if page.name.startswith("_"):  # notes for maintainers, not user pages
            continue
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


def test_no_internal_document_is_cited():
    word = re.compile(r"\b" + "SP" + r"EC\b")  # spelt in two parts so this file does not match itself
    cited = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in [*PAGES, *sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "examples").glob("*.yaml"))]
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if word.search(line)
    ]
    assert not cited, cited


@pytest.mark.parametrize("kind", JOBS.names())
def test_job_config_documents_itself(kind):
    cls = JOBS.get(kind)
    doc = inspect.cleandoc(cls.__doc__ or "")
    sample = re.search(r"Sample YAML[^\n]*::\n\n((?: {4}.*\n?)+)", doc + "\n")
    assert sample, f"{cls.__name__}: no 'Sample YAML ...::' block in its docstring"
    data = yaml.safe_load(inspect.cleandoc(sample.group(1)))
    assert parse_config(cls, data).job == kind
    assert docstring_fields(cls), f"{cls.__name__}: no 'Fields:' section"
    blank = [line for line in settings_table(cls).splitlines()[2:] if line.endswith("|  |")]
    assert not blank, f"{cls.__name__}: fields without a description: {blank}"


def test_every_example_validates_and_every_job_kind_has_one():
    kinds = set()
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        kinds.add(load_job(path).job)
    assert kinds == set(JOBS.names())
