"""Write benchmarks/RESULTS.md: an index of the results pages in benchmarks/results/.

    python benchmarks/assemble_results.py            # write RESULTS.md
    python benchmarks/assemble_results.py --check    # exit 1 if RESULTS.md is not what would be written

The index holds the machine header, then for each page `results/<name>.md` (in ORDER, the rest by
name) its title, a link to it and its summary. The rule, kept simple so any page can follow it:

- the title is the page's first line that starts with "# ";
- the summary is the first paragraph after the title that is prose: consecutive non-blank lines,
  skipping headings, fenced code blocks, tables ("|"), images ("![") and HTML lines ("<"); its lines
  are joined with single spaces, and its relative links are rewritten to work from RESULTS.md.

So a page opens with its title, then one paragraph stating the current answer; the command, the table,
its reading and limits follow. `--check` writes nothing; CI runs it, so a page whose opening changed
fails until this script is run again. `--root DIR` reads DIR/results/ and writes DIR/RESULTS.md
(default: this script's folder).

`--check` on this folder also re-renders the pages listed in RENDERED from their committed records
(each script's render function: no model runs) and fails when a page, or one of its tables, is not
byte-identical to what its records give. The selection suite's page has its own check
(`benchmarks/suite/analyze.py --check`).
"""

from __future__ import annotations

import argparse
import importlib.util
import posixpath
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    "selection_suite",
    "selection",
    "zoo",
    "layer_pruning",
    "data_filters",
    "data_compress",
    "finetune_speed",
    "cross_calibration",
    "finescope",
]
HEADER = """# damoc benchmark results

One page per area in `benchmarks/results/`. Each opens with its current answer (the command, one
table, what it means, its limits) and names the records under `benchmarks/records/<area>/` that its
figures come from. This index is written by `python benchmarks/assemble_results.py` from each page's
title and first paragraph; `--check` fails when it is out of date.

Machine: a shared 2-core x86_64 VM without AVX-512 (about 23 GiB RAM, no GPU, torch 2.13 CPU), with
other jobs on the same cores while these ran. Absolute times are inflated and not comparable across
runs: speed claims are ratios measured in the same run; losses, scores and rankings do not depend on
the load.
"""
# Pages a benchmark script renders from its committed records: page -> (script, function, what). The
# function takes no argument and writes nothing. "page": it returns the whole page; "tables": each table it
# returns (a run of lines starting with "|") must stand in the page as it is, the text around them being
# written by hand.
RENDERED = {
    "adaptive_vs_fixed": ("adaptive_vs_fixed.py", "render_page", "page"),
    "data_compress": ("data_level.py", "render_tables", "tables"),
    "layer_pruning": ("layer_pruning.py", "render_tables", "tables"),
    "robustness": ("robustness.py", "render_page", "page"),
    "demo_precision": ("demo_precision.py", "render_page", "page"),
}
_SKIP_PREFIXES = ("#", "|", "![", "<")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def page_title(text: str, name: str) -> str:
    """The first "# " heading of a page, else its file name."""
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return name


def page_summary(text: str) -> str:
    """The first prose paragraph after the title (the rule in the module docstring)."""
    lines = text.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    paragraph: list[str] = []
    in_code = False
    for line in lines[start:]:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            if paragraph:
                break
            continue
        if in_code:
            continue
        if not stripped or stripped.startswith(_SKIP_PREFIXES):
            if paragraph:
                break
            continue
        paragraph.append(stripped)
    return " ".join(paragraph)


def rebase_links(text: str) -> str:
    """Relative Markdown links written from results/ made to work from the index's folder."""

    def rebase(match: re.Match) -> str:
        target = match.group(1)
        if target.startswith(("#", "/")) or re.match(r"^[a-z][a-z0-9+.-]*:", target):
            return match.group(0)
        return f"]({posixpath.normpath(posixpath.join('results', target))})"

    return _LINK.sub(rebase, text)


def page_names(results: Path) -> list[str]:
    names = [n for n in ORDER if (results / f"{n}.md").exists()]
    return names + sorted(p.stem for p in results.glob("*.md") if p.stem not in ORDER)


def build_index(root: Path) -> str:
    """The text of RESULTS.md for the pages in root/results/."""
    results = root / "results"
    parts = [HEADER]
    for name in page_names(results):
        text = (results / f"{name}.md").read_text(encoding="utf-8")
        summary = rebase_links(page_summary(text)) or "(no summary paragraph)"
        parts.append(f"## [{page_title(text, name)}](results/{name}.md)\n\n{summary}\n")
    return "\n".join(parts)


def tables(text: str) -> list[str]:
    """The Markdown tables of ``text``: each run of consecutive lines that start with "|"."""
    out, run = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            run.append(line)
        elif run:
            out.append("\n".join(run))
            run = []
    return out


def _render(script: Path, function: str) -> str:
    """Call ``function`` of the benchmark script ``script`` (imported with its folder on sys.path)."""
    sys.path.insert(0, str(script.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"_rendered_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, function)()
    finally:
        sys.path.remove(str(script.parent))


def stale_pages(root: Path) -> list[str]:
    """One line per page in RENDERED (or table of one) that differs from what its records render."""
    problems = []
    for name, (script, function, what) in RENDERED.items():
        page = (root / "results" / f"{name}.md").read_text(encoding="utf-8")
        rendered = _render(root / script, function)
        how = f"run python benchmarks/{script} to render it from its records"
        if what == "page" and page != rendered:
            problems.append(f"results/{name}.md is not what its records give: {how}")
        elif what == "tables":
            have = tables(page)
            for i, table in enumerate(tables(rendered), 1):
                if table not in have:
                    head = table.splitlines()[0][:60]
                    problems.append(
                        f"results/{name}.md: table {i} ({head}...) is not what its records give: {how}"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write benchmarks/RESULTS.md, an index of benchmarks/results/*.md."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md differs; write nothing")
    parser.add_argument("--root", type=Path, default=HERE, help="folder holding results/ and RESULTS.md")
    args = parser.parse_args(argv)
    if not (args.root / "results").is_dir():
        print(f"error: no results/ folder under {args.root}", file=sys.stderr)
        return 2
    text = build_index(args.root)
    target = args.root / "RESULTS.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current != text:
            print(f"{target} is out of date: run python benchmarks/assemble_results.py", file=sys.stderr)
            return 1
        if args.root.resolve() == HERE.resolve():
            problems = stale_pages(args.root)
            for line in problems:
                print(line, file=sys.stderr)
            return 1 if problems else 0
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({text.count(chr(10) + '## ')} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
