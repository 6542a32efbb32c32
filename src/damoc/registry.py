"""One generic registry: members listed by name, loaded on first use, with a helpful error for a typo.

A registry's definition lists its members explicitly, each as a lazy ``"package.module:object"``
target (as lm-evaluation-harness's registry does), so listing the names imports nothing, ``--list``
can say where each member lives, and no member depends on some module having been imported::

    MERGES = Registry("merge method", [
        Entry("none", "damoc.model.merge.none:merge_none", help="plain removal: kept layers untouched"),
        Entry("linear", "damoc.model.merge.linear:merge_linear", family="linear"),
    ])
    MERGES.get("linear")        # imports damoc.model.merge.linear, returns merge_linear
    MERGES.entry("linear").where  # "damoc.model.merge.linear:merge_linear"

Objects built in the registry's own module (metrics, zoo entries) can be added as they are, with
:meth:`Registry.add` or the :meth:`Registry.register` decorator. ``docs/add_a_method.md`` says how
to add a member to each registry.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from damoc.errors import DamocError

T = TypeVar("T")

_UNLOADED: Any = object()


def _where(obj: object) -> str:
    """``module:qualname`` of a class or function; the module of an instance's type otherwise."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return type(obj).__module__


def _first_doc_line(obj: object) -> str:
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return lines[0].strip() if lines else ""


class Entry(Generic[T]):
    """One member: its name, where it lives, its family and a one-line help.

    ``target`` is either ``"package.module:attribute"`` (imported on first use of :attr:`obj`) or
    the object itself. ``help`` defaults to the first line of the object's docstring (reading it
    loads the object)."""

    def __init__(self, name: str, target: str | T, *, family: str | None = None, help: str = ""):
        self.name = name.lower()
        self.family = family
        self._help = help
        if isinstance(target, str):
            module, sep, attr = target.partition(":")
            if not (module and sep and attr):
                raise ValueError(f"registry target must be 'package.module:object', got '{target}'")
            self.where = target
            self._obj: Any = _UNLOADED
        else:
            self.where = _where(target)
            self._obj = target

    @property
    def obj(self) -> T:
        if self._obj is _UNLOADED:
            module, _, attr = self.where.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._obj = obj
        return self._obj

    @property
    def help(self) -> str:
        return self._help or _first_doc_line(self.obj)

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {self.where!r}, family={self.family!r})"


class Registry(Generic[T]):
    """A named collection of implementations (filters, merge methods, metrics, ...), in listing order."""

    def __init__(self, kind: str, members: Iterable[Entry[T]] = ()):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        for entry in members:
            self._add_entry(entry)

    def _add_entry(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is registered twice")
        self._entries[entry.name] = entry

    def add(self, name: str, target: str | T, *, family: str | None = None, help: str = "") -> None:
        """Add a member: an object, or a lazy ``"package.module:object"`` target."""
        self._add_entry(Entry(name, target, family=family, help=help))

    def register(self, name: str, *, family: str | None = None, help: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add` for objects defined in the registry's own module."""

        def deco(obj: T) -> T:
            self.add(name, obj, family=family, help=help)
            return obj

        return deco

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        key = str(name).lower()
        if key not in self._entries:
            known = list(self._entries)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DamocError(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(sorted(known))})")
        return self._entries[key]

    def names(self, family: str | None = None) -> list[str]:
        return [e.name for e in self._entries.values() if family is None or e.family == family]

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __len__(self) -> int:
        return len(self._entries)
