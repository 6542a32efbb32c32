"""Settings tables for the docs, read from the config classes themselves.

A docs page marks where a class's table goes::

    <!-- settings: damoc.data.compress.config:CompressConfig -->
    | setting | type | default | what it does |
    ...
    <!-- /settings -->

and ``python -m damoc.config_docs docs/*.md`` rewrites every marked block from the class: each field's
name, type, default and description (the field's ``description``, else its line in the class
docstring's ``Fields:`` section, else the comment on its line or the comment lines just above it). ``--check`` exits 1 when a page's table is stale (the tests run it),
so the docs never drift from the defaults in the code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

FIELD_LINE = re.compile(r"^ {4}(\w+): (.*)$")
LITERAL = re.compile(r"Literal\[([^\]]*)\]")
BLOCK = re.compile(r"(<!-- settings: (?P<target>[\w.]+:\w+) -->\n)(?P<body>.*?)(<!-- /settings -->)", re.S)


def load_class(target: str) -> type[BaseModel]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@cache
def _field_sources(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (annotation as written, comment)}`` for the fields ``cls`` itself declares."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    out = {}
    body = ast.parse(src).body[0]
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        note = " ".join(
            comments[i] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1) if i in comments
        )
        if not note:  # the comment lines just above the field
            above, i = [], node.lineno - 1
            while i >= 1 and lines[i - 1].strip().startswith("#"):
                above.insert(0, comments.get(i, ""))
                i -= 1
            note = " ".join(above)
        out[node.target.id] = (ast.unparse(node.annotation), note)
    return out


def docstring_fields(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Fields:`` section of ``cls``'s own docstring (``name: text`` lines)."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    out: dict[str, str] = {}
    lines = doc.splitlines()
    if "Fields:" not in lines:
        return out
    last = None
    for line in lines[lines.index("Fields:") + 1 :]:
        if not line.startswith(" ") and line.strip():
            break
        m = FIELD_LINE.match(line)
        if m:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif last and line.startswith(" " * 8):  # a continuation of the field's text
            out[last] += " " + line.strip()
        else:
            last = None
    return out


def _declared(cls: type[BaseModel], name: str, alias: str | None = None) -> tuple[str, str]:
    annotation, note = "", ""
    for klass in cls.__mro__:
        found = _field_sources(klass).get(name)
        if found is not None:
            annotation, note = found
            break
    for klass in cls.__mro__:
        text = docstring_fields(klass).get(name) or docstring_fields(klass).get(alias or name)
        if text:
            return annotation, text
    return annotation, note


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "`null`"
    return f"`{json.dumps(value)}`"


def settings_table(cls: type[BaseModel]) -> str:
    """A Markdown table of ``cls``'s fields: name (YAML key), type, default, what it does."""
    rows = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    for name, info in cls.model_fields.items():
        if name == "job":
            continue
        annotation, note = _declared(cls, name, info.alias)
        key = info.alias or name
        default = "required" if info.is_required() else _default(info.get_default(call_default_factory=True))
        text = (info.description or note).replace("|", "\\|").replace("\n", " ")
        text = text.replace("<", "&lt;").replace(">", "&gt;")
        kind = LITERAL.sub(lambda m: " or ".join(x.strip() for x in m.group(1).split(",")), annotation)
        kind = kind.replace(" | ", " or ").replace("None", "null")
        rows.append(f"| `{key}` | {kind} | {default} | {text} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    """``text`` with every marked settings block rewritten from its class."""
    return BLOCK.sub(lambda m: m.group(1) + settings_table(load_class(m.group("target"))) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pages", nargs="+", type=Path, help="Markdown pages with settings blocks")
    ap.add_argument("--check", action="store_true", help="only report stale pages (exit 1), write nothing")
    args = ap.parse_args(argv)
    stale = []
    for page in args.pages:
        old = page.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            stale.append(page)
            if not args.check:
                page.write_text(new, encoding="utf-8")
    for page in stale:
        print(f"{page}: settings tables {'out of date' if args.check else 'rewritten'}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
