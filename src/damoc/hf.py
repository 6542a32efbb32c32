"""Small helpers around transformers shared by model loading (``damoc.model.arch``) and the zoo's
GGUF conversion (``damoc.zoo.convert``): neither imports the other for them."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_load() -> Iterator[None]:
    """Silence transformers' logging and Python warnings while a model or tokenizer loads."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def text_config(config):
    """The config that holds ``num_hidden_layers`` (the text sub-config for multimodal models)."""
    if hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config
