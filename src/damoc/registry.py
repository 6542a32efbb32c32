"""One generic registry: register by name, list, get with a helpful error."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from damoc.errors import DamocError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    family: str | None = None
    help: str = ""


@dataclass
class Registry(Generic[T]):
    """A named collection of implementations (filters, merge methods, metrics, ...)."""

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)

    def register(self, name: str, *, family: str | None = None, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name.lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = help or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[key] = Entry(name=key, obj=obj, family=family, help=text)
            return obj

        return deco

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        key = str(name).lower()
        if key not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DamocError(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(known)})")
        return self._entries[key]

    def names(self, family: str | None = None) -> list[str]:
        return [e.name for e in self._entries.values() if family is None or e.family == family]

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __len__(self) -> int:
        return len(self._entries)
