"""damoc: pick the open LLM to fine-tune for a domain task, cheaply."""

from damoc.errors import DamocError

__version__ = "0.1.0"
__all__ = ["DamocError", "__version__"]
