"""Concatenate the per-area write-ups in benchmarks/results/ into benchmarks/RESULTS.md.

python benchmarks/assemble_results.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = [
    "zoo",
    "layer_pruning",
    "data_filters",
    "data_compress",
    "selection",
    "finetune_speed",
    "cross_calibration",
    "finescope",
]
HEADER = """# damoc benchmark results

Every figure below was measured by the script and command named in its section, on the development
machine: an x86_64 VM with 2 CPU cores and 23 GiB RAM, no GPU, torch 2.13.0+cpu, transformers 5.23 (5.24 for the 2026-12-01 selection runs).
While these ran, the 2 cores were shared with other jobs (load average 5-16), so **absolute wall
times are inflated**; speed claims are made only as ratios measured in the same run, and rates,
losses, perplexities and rankings do not depend on load. Records (the raw numbers, reusable by later
runs) are under `benchmarks/records/<area>/`. Each section is kept in `benchmarks/results/<area>.md`
and assembled here by `python benchmarks/assemble_results.py`.

"""


def main() -> None:
    parts = [HEADER]
    names = [n for n in ORDER if (HERE / "results" / f"{n}.md").exists()]
    names += sorted(p.stem for p in (HERE / "results").glob("*.md") if p.stem not in ORDER)
    parts.append("Sections: " + ", ".join(f"[{n}](#{n.replace('_', '-')})" for n in names) + "\n")
    for n in names:
        text = "\n" + (HERE / "results" / f"{n}.md").read_text(encoding="utf-8").strip()
        parts.append(
            f'\n<a id="{n.replace("_", "-")}"></a>\n\n' + text.replace("\n#", "\n##").lstrip("\n") + "\n"
        )
    (HERE / "RESULTS.md").write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'} ({len(names)} sections)")


if __name__ == "__main__":
    main()
