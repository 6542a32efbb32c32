"""Text → scorer tokens grouped into words ("units"), and the character spans that must be kept.

Tokens are dropped a whole word at a time: a unit is a run of scorer tokens with no whitespace inside,
together with the whitespace before it. The compressed text is the concatenation of the kept units'
original characters, so nothing is ever re-detokenized and re-tokenizing it gives (almost exactly)
the kept token count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Unit:
    start: int  # character span in the segment text, leading whitespace included
    end: int
    tok_lo: int  # token index range [tok_lo, tok_hi) in the segment's token ids
    tok_hi: int
    keep: bool = False  # overlaps a must-keep span

    @property
    def n_tokens(self) -> int:
        return self.tok_hi - self.tok_lo


@dataclass
class Segment:
    name: str
    text: str
    ids: list[int]
    units: list[Unit]

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def must_keep_tokens(self) -> int:
        return sum(u.n_tokens for u in self.units if u.keep)

    def render(self, kept: Iterable[int]) -> str:
        """The text of the kept units (indices into ``units``), in order."""
        return "".join(self.text[self.units[i].start : self.units[i].end] for i in sorted(kept)).strip()


def tokenize_segment(tok, name: str, text: str) -> Segment:
    """Scorer token ids of ``text`` (no special tokens) and their grouping into units."""
    if not text:
        return Segment(name, text, [], [])
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    units: list[Unit] = []
    prev_end = 0
    has_content = False
    for i, (s, e) in enumerate(offsets):
        piece = text[s:e]
        gap = text[prev_end:s] if s >= prev_end else ""
        starts_ws = any(c.isspace() for c in gap) or (piece[:1].isspace())
        if not units or (has_content and starts_ws):
            start = units[-1].end if units else 0
            units.append(Unit(start=start, end=max(e, start), tok_lo=i, tok_hi=i + 1))
            has_content = bool(piece.strip())
        else:
            u = units[-1]
            u.tok_hi = i + 1
            u.end = max(u.end, e)
            has_content = has_content or bool(piece.strip())
        prev_end = max(prev_end, e)
    if units:
        units[-1].end = len(text)
    return Segment(name, text, ids, units)


def find_spans(text: str, needles: Iterable[str], patterns: Iterable[str] = ()) -> list[tuple[int, int]]:
    """Character spans of every case-insensitive, word-bounded occurrence of each needle, and regex matches."""
    spans: list[tuple[int, int]] = []
    low = text.lower()
    for needle in needles:
        n = needle.strip().lower()
        if not n:
            continue
        pat = (r"(?<!\w)" if n[0].isalnum() else "") + re.escape(n) + (r"(?!\w)" if n[-1].isalnum() else "")
        spans.extend(m.span() for m in re.finditer(pat, low))
    for p in patterns:
        spans.extend(m.span() for m in re.finditer(p, text) if m.end() > m.start())
    return spans


def mark_keep(segment: Segment, spans: Iterable[tuple[int, int]]) -> None:
    """Flag every unit whose non-whitespace characters overlap one of ``spans``."""
    spans = sorted(spans)
    if not spans:
        return
    for u in segment.units:
        body = segment.text[u.start : u.end]
        lead = len(body) - len(body.lstrip())
        s0 = u.start + lead
        if any(s < u.end and e > s0 for s, e in spans):
            u.keep = True
