"""damoc: pick the open LLM to fine-tune for a domain task, cheaply.

The Python API (``damoc.select``, ``damoc.prune_layers``, ``damoc.filter``, ``damoc.compress``,
``damoc.prune_calibrated``, ``damoc.quantize``) lives in :mod:`damoc.api` and is imported on first use,
so ``import damoc`` stays light.
"""

from damoc.errors import DamocError

__version__ = "0.1.0"
API = ("select", "prune_layers", "filter", "compress", "prune_calibrated", "quantize")
__all__ = ["DamocError", "__version__", *API]


def __getattr__(name: str):
    if name == "select":  # the package damoc.select is callable: it runs damoc.api.select
        import damoc.select

        return damoc.select
    if name in API:
        from damoc import api

        return getattr(api, name)
    raise AttributeError(f"module 'damoc' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
