"""One hashing scheme for everything damoc caches or resumes: SHA-256, as hex digits.

- :func:`digest` hashes one JSON value (settings, the parts of a cache key) as canonical JSON
  (sorted keys; values JSON cannot hold are written with ``str``);
- :func:`rows_digest` hashes a sequence of rows (a task's examples) one JSON row at a time, so a large
  task is never joined into one string;
- :func:`bytes_digest` hashes raw chunks (a file's bytes).

Each returns the first ``chars`` hex digits: :data:`DIGEST_CHARS` (16, i.e. 64 bits) unless a caller
needs more. Ground-truth cache keys use 24 (``damoc.select.cache.GROUND_TRUTH_KEY_CHARS``): they name
records that are shared between runs and machines, and the records already committed are named so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

DIGEST_CHARS = 16


def bytes_digest(chunks: Iterable[bytes], chars: int = DIGEST_CHARS) -> str:
    """SHA-256 of the chunks in order, first ``chars`` hex digits."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:chars]


def digest(value: Any, chars: int = DIGEST_CHARS) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys), first ``chars`` hex digits."""
    return bytes_digest([json.dumps(value, sort_keys=True, default=str).encode()], chars)


def rows_digest(rows: Iterable[Any], chars: int = DIGEST_CHARS) -> str:
    """SHA-256 of each row's JSON in turn (row order matters), first ``chars`` hex digits."""
    return bytes_digest((json.dumps(row).encode() for row in rows), chars)
