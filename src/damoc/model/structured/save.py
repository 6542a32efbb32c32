"""Write a pruned model as a loadable Hugging Face checkpoint, with its pruning record."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from damoc.io.files import atomic_output_dir, write_json_atomic
from damoc.model.arch import save_model
from damoc.model.structured.prune import PruneReport


def save_model_dir(model: nn.Module, tok, out: Path) -> None:
    """save_pretrained of model and tokenizer into an existing directory (no quantization leftovers)."""
    conf = model.config
    if getattr(conf, "quantization_config", None) is not None:
        del conf.quantization_config
    save_model(model, out)  # in the source's dtype (damoc.model.arch)
    tok.save_pretrained(out)


def save_pruned(model: nn.Module, tok, report: PruneReport, out: str | Path, overwrite: bool = False) -> Path:
    """The checkpoint appears whole or not at all; ``pruning.json`` records sizes, ratio and settings."""
    with atomic_output_dir(out, overwrite) as tmp:
        save_model_dir(model, tok, tmp)
        write_json_atomic(tmp / "pruning.json", report.to_dict())
    return Path(out)
