"""Contextual token embeddings of a text under the fidelity encoder (the one BERTScore uses).

The compressor picks words by how much of the original's meaning they cover under the same encoder
and layer that the fidelity check scores with (:mod:`damoc.data.compress.coverage`). A text longer
than the encoder's window is embedded window by window (no overlap); each window is a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damoc.data.fidelity import default_encoder_dir, encoder_layers
from damoc.errors import DamocError
from damoc.logging_utils import progress


@dataclass
class Embedded:
    """One text's encoder tokens: L2-normalised embeddings, character starts, and window ranges."""

    emb: np.ndarray  # [m, d] float32
    starts: list[int]  # character offset where each token starts in the text
    blocks: list[tuple[int, int]]  # [start, end) token ranges embedded together


class TokenEncoder:
    """``texts -> [Embedded]`` with a local encoder directory (default: the fidelity check's MiniLM)."""

    def __init__(self, path: str | Path | None = None, layer: int | None = None, batch_size: int = 16):
        self.path = path
        self.layer = layer
        self.batch_size = batch_size
        self._model = None
        self._tok = None
        self._wrap: tuple[list[int], list[int]] = ([], [])

    def _load(self):
        from transformers import AutoModel, AutoTokenizer

        path = Path(self.path) if self.path else default_encoder_dir()
        if not path.is_dir():
            raise DamocError(f"fidelity encoder {path} is not a directory")
        n = encoder_layers(path)
        self.layer = self.layer or n
        if not 1 <= self.layer <= n:
            raise DamocError(f"fidelity layer {self.layer} is outside 1..{n} for the encoder {path}")
        self._tok = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()
        # the special tokens the encoder wraps a text in, found on a one-word text
        with_special = self._tok("a")["input_ids"]
        plain = self._tok("a", add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain)
        self._wrap = (with_special[:at], with_special[at + len(plain) :])

    def window(self) -> int:
        """Content tokens per window: the encoder's length limit less its special tokens."""
        limits = [int(self._tok.model_max_length or 512)]
        limits.append(int(getattr(self._model.config, "max_position_embeddings", 512)))
        return max(8, min(limits) - len(self._wrap[0]) - len(self._wrap[1]))

    def __call__(self, texts: Sequence[str]) -> list[Embedded]:
        import torch

        if self._model is None:
            self._load()
        tok, width = self._tok, self.window()
        # whole texts, cut into windows below (verbose=False: no over-length warning for that)
        encs = [tok(t, add_special_tokens=False, return_offsets_mapping=True, verbose=False) for t in texts]
        windows = []  # (text index, token lo, token hi)
        for i, e in enumerate(encs):
            n = len(e["input_ids"])
            windows.extend((i, lo, min(lo + width, n)) for lo in range(0, n, width))
        outs: list[list[np.ndarray]] = [[] for _ in texts]
        bar = progress(total=len(windows), desc="embed", unit="window")
        with torch.inference_mode():
            for b in range(0, len(windows), self.batch_size):
                group = windows[b : b + self.batch_size]
                head, tail = self._wrap
                seqs = [head + list(encs[i]["input_ids"][lo:hi]) + tail for i, lo, hi in group]
                m = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), m), tok.pad_token_id or 0, dtype=torch.long)
                mask = torch.zeros((len(seqs), m), dtype=torch.long)
                for k, s in enumerate(seqs):
                    ids[k, : len(s)] = torch.tensor(s)
                    mask[k, : len(s)] = 1
                hs = self._model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                h = torch.nn.functional.normalize(hs[self.layer].float(), dim=-1)
                for k, (i, lo, hi) in enumerate(group):
                    outs[i].append(h[k, len(head) : len(head) + hi - lo].numpy())
                bar.update(len(group))
        bar.close()
        result = []
        for i, e in enumerate(encs):
            n = len(e["input_ids"])
            emb = np.concatenate(outs[i]) if outs[i] else np.zeros((0, 1), dtype=np.float32)
            blocks = [(lo, min(lo + width, n)) for lo in range(0, n, width)]
            result.append(Embedded(emb, [s for s, _ in e["offset_mapping"]], blocks))
        return result
