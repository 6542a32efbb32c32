"""The FineScope run's report: the stages' scores, what recovery won back, and its Markdown rendering."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from damoc.curate.scores import StageResult


@dataclass
class FinescopeReport:
    model: str
    stages: list[StageResult]
    recovery: dict[str, float | None]  # share of the pruning loss in answer bpb won back, per recovery stage
    curation: dict
    pruning: dict
    distill: dict  # per self-distillation stage: teacher mode, fallbacks, answer lengths, timings
    wall_s: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    fidelity_recovery: dict[str, float | None] = field(default_factory=dict)  # same, for fidelity KL
    # per self-distillation stage: its answer bpb minus plain fine-tuning's on the same rows, with a
    # paired bootstrap interval (negative: self-distillation is better)
    versus_plain: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.stage == name)


def render_markdown(r: FinescopeReport) -> str:
    lines = [
        f"# FineScope on {r.model}",
        "",
        "| stage | params | answer bits/byte (lower is better) | label accuracy | fidelity KL to source "
        "(nats/token, lower is better) | stage time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in r.stages:
        acc = "-" if s.score.label_accuracy is None else f"{s.score.label_accuracy:.3f}"
        kl = "-" if s.score.fidelity_kl is None else f"{s.score.fidelity_kl:.4f}"
        cached = " (cached)" if s.cached else ""
        lines.append(
            f"| {s.stage} | {s.params:,} | {s.score.answer_bpb:.4f} | {acc} | {kl} | {s.stage_wall_s:.1f}{cached} |"
        )
    lines += ["", "Share of the pruning loss won back (answer bits/byte; fidelity KL):", ""]
    for k, v in r.recovery.items():
        f = r.fidelity_recovery.get(k)
        lines.append(f"- {k}: {'n/a' if v is None else f'{v:.3f}'}; {'n/a' if f is None else f'{f:.3f}'}")
    if r.versus_plain:
        lines += [
            "",
            "Answer bits/byte minus plain fine-tuning's, same rows (negative: better than plain):",
            "",
        ]
        for k, d in r.versus_plain.items():
            lines.append(
                f"- {k}: {d['diff']:+.4f}, {100 * d['level']:.0f}% paired bootstrap interval "
                f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] over {d['n_rows']} rows; "
                f"better in {100 * d['share_a_better']:.0f}% of draws"
            )
    for name, d in r.distill.items():
        lines.append(
            f"- {name}: teacher mode {d['teacher_mode']}, {d['kept']} answers "
            f"(mean {d['mean_answer_chars']:.0f} chars), {d['fallbacks']} gold fallbacks, KL weight {d['kl_weight']}"
        )
    cur = r.curation
    lines += ["", f"Curation: top {cur['top']} of {cur['n_pool']} pool rows, {cur['n_seeds']} seeds."]
    for m in cur["methods"]:
        p = "n/a" if m["precision"] is None else f"{m['precision']:.3f}"
        lines.append(f"- {m['method']}: precision {p} ({m['wall_s']:.1f} s)")
    return "\n".join(lines) + "\n"
