"""Saving and loading SAEs: damoc's own layout, and the sae-lens on-disk layout.

damoc's layout (what :func:`save_sae` writes and the SAE cache holds)::

    sae.safetensors      W_enc (d_model, width), b_enc, W_dec (width, d_model), b_dec, input_scale[, threshold]
    sae_config.json      {"format": "damoc-sae", "version": 1, "config": SAEConfig, "info": {...}}

``info`` says where the SAE came from (model, layer, pool hash, training settings and statistics).
Reloading gives the same tensors, so the same latents.

sae-lens's layout (``SAE.save_model`` of sae-lens 6.x; read by :func:`load_sae`, written by
:func:`export_sae_lens`)::

    cfg.json                 d_in, d_sae, architecture (topk / standard / jumprelu), k,
                             apply_b_dec_to_input, normalize_activations, metadata {hook_name, model_name, ...}
    sae_weights.safetensors  W_enc (d_in, d_sae), b_enc, W_dec (d_sae, d_in), b_dec[, threshold]

Configs written before sae-lens 6 (``activation_fn_str: topk`` with ``activation_fn_kwargs.k``,
``hook_point``) are read too. The export folds damoc's input scale into the weights (W_enc * s,
b_dec / s, W_dec / s), which gives the same latents up to float rounding.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from damoc.curate.sae import SAEConfig, TopKSAE
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir, read_json, write_json_atomic

LOG = logging.getLogger(__name__)

FORMAT = "damoc-sae"
VERSION = 1
WEIGHTS = "sae.safetensors"
CONFIG = "sae_config.json"
SAE_LENS_WEIGHTS = "sae_weights.safetensors"
SAE_LENS_CONFIG = "cfg.json"
SAE_LENS_ARCHS = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}
# sae-lens applies none of these at inference after loading from disk except the two it computes per row
_NORMALIZE_OK = {"none", None, False, "expected_average_only_in"}


@dataclass
class LoadedSAE:
    sae: TopKSAE
    format: str  # "damoc" or "sae-lens"
    info: dict[str, Any] = field(default_factory=dict)  # provenance; sae-lens: its metadata

    @property
    def layer(self) -> int | None:
        """The decoder layer whose output the SAE reads, when the files say so."""
        if isinstance(self.info.get("layer"), int):
            return self.info["layer"]
        return layer_from_hook(self.info.get("hook_name"))


def layer_from_hook(hook_name: str | None) -> int | None:
    """``blocks.L.hook_resid_post`` -> L (the output of decoder layer L, what damoc hooks);
    ``blocks.L.hook_resid_pre`` -> L - 1; anything else -> None."""
    if not hook_name:
        return None
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook_name)
    if not m:
        return None
    layer = int(m.group(1))
    return layer if m.group(2) == "post" else (layer - 1 if layer > 0 else None)


def _state(sae: TopKSAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous().clone() for k, v in sae.state_dict().items()}


def write_sae_files(sae: TopKSAE, directory: Path, info: dict[str, Any] | None = None) -> None:
    """The two files of damoc's layout, into an existing directory."""
    from safetensors.torch import save_file

    save_file(_state(sae), str(directory / WEIGHTS))
    write_json_atomic(
        directory / CONFIG,
        {"format": FORMAT, "version": VERSION, "config": sae.cfg.to_dict(), "info": info or {}},
    )


def save_sae(
    sae: TopKSAE, path: str | Path, info: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write ``sae`` in damoc's layout (the directory appears whole or not at all)."""
    with atomic_output_dir(path, overwrite) as tmp:
        write_sae_files(sae, tmp, info)
    return Path(path)


def export_sae_lens(
    sae: TopKSAE,
    path: str | Path,
    model_name: str | None = None,
    hook_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``sae`` in sae-lens 6.x's on-disk layout (``SAE.load_from_disk`` reads it)."""
    from safetensors.torch import save_file

    cfg = sae.cfg
    arch = {v: k for k, v in SAE_LENS_ARCHS.items()}[cfg.activation]
    s = float(sae.input_scale)
    if cfg.rescale_acts_by_decoder_norm and abs(s - 1.0) > 1e-12:
        raise DamocError("cannot export an SAE that rescales by decoder norms and has an input scale")
    if not cfg.apply_b_dec_to_input and abs(s - 1.0) > 1e-12:
        raise DamocError("cannot export an SAE without apply_b_dec_to_input that has an input scale")
    with torch.no_grad():
        weights = {
            "W_enc": (sae.W_enc * s).float().contiguous(),
            "b_enc": sae.b_enc.float().contiguous().clone(),
            "W_dec": (sae.W_dec / s).float().contiguous(),
            "b_dec": (sae.b_dec / s).float().contiguous(),
        }
        if cfg.activation == "jumprelu":
            weights["threshold"] = sae.threshold.float().contiguous().clone()
    config: dict[str, Any] = {
        "architecture": arch,
        "d_in": cfg.d_model,
        "d_sae": cfg.width,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.0.0", "model_name": model_name, "hook_name": hook_name},
    }
    if arch == "topk":
        config.update(k=cfg.k, rescale_acts_by_decoder_norm=cfg.rescale_acts_by_decoder_norm)
    with atomic_output_dir(path, overwrite) as tmp:
        save_file(weights, str(tmp / SAE_LENS_WEIGHTS))
        (tmp / SAE_LENS_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    return Path(path)


def load_sae(path: str | Path) -> LoadedSAE:
    """An SAE from a directory in damoc's layout or sae-lens's (see the module docstring)."""
    p = Path(path).expanduser()
    if (p / CONFIG).is_file() and (p / WEIGHTS).is_file():
        return _load_damoc(p)
    if (p / SAE_LENS_CONFIG).is_file() and (p / SAE_LENS_WEIGHTS).is_file():
        return _load_sae_lens(p)
    raise DamocError(
        f"{p} is not an SAE directory: expected {CONFIG} + {WEIGHTS} (damoc) "
        f"or {SAE_LENS_CONFIG} + {SAE_LENS_WEIGHTS} (sae-lens)"
    )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return {k: v.float() for k, v in load_file(str(path)).items()}
    except Exception as exc:  # a truncated or foreign file: one line, not a traceback
        raise DamocError(f"{path}: cannot read the SAE weights ({exc})") from None


def _load_damoc(p: Path) -> LoadedSAE:
    meta = read_json(p / CONFIG)
    if meta.get("format") != FORMAT:
        raise DamocError(f"{p / CONFIG}: not a damoc SAE config (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise DamocError(
            f"{p / CONFIG}: version {meta['version']} is newer than this damoc reads ({VERSION})"
        )
    try:
        cfg = SAEConfig(**meta["config"])
    except TypeError as exc:
        raise DamocError(f"{p / CONFIG}: bad SAE config ({exc})") from None
    sae = TopKSAE(cfg)
    _assign(sae, _read_weights(p / WEIGHTS), p)
    return LoadedSAE(sae, "damoc", dict(meta.get("info") or {}))


def _sae_lens_config(raw: dict[str, Any], where: Path) -> tuple[SAEConfig, dict[str, Any]]:
    """Our config from a sae-lens ``cfg.json`` (6.x, or the older flat layout)."""
    meta = dict(raw.get("metadata") or {})
    for old, new in (("hook_point", "hook_name"), ("model_name", "model_name"), ("hook_name", "hook_name")):
        if old in raw and new not in meta:
            meta[new] = raw[old]
    arch = raw.get("architecture")
    act_fn = raw.get("activation_fn", raw.get("activation_fn_str"))
    k = raw.get("k", (raw.get("activation_fn_kwargs") or {}).get("k"))
    if arch is None:
        arch = "topk" if act_fn == "topk" and k is not None else "standard"
    if arch not in SAE_LENS_ARCHS:
        raise DamocError(
            f"{where}: sae-lens architecture '{arch}' is not supported (supported: {', '.join(SAE_LENS_ARCHS)})"
        )
    if raw.get("reshape_activations", "none") != "none":
        raise DamocError(f"{where}: SAEs on reshaped activations (hook_z) are not supported")
    norm = raw.get("normalize_activations", "none")
    if norm not in _NORMALIZE_OK:
        raise DamocError(f"{where}: normalize_activations '{norm}' is not supported (use 'none')")
    if norm in ("expected_average_only_in", True):
        LOG.warning(
            "%s: normalize_activations '%s' is not applied when reading from disk (as in sae-lens)",
            where,
            norm,
        )
    try:
        d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise DamocError(f"{where}: cfg.json needs integer d_in and d_sae") from None
    cfg = SAEConfig(
        d_model=d_in,
        d_sae=d_sae,
        k=int(k) if k is not None else 1,
        activation=SAE_LENS_ARCHS[arch],  # type: ignore[arg-type]
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
        rescale_acts_by_decoder_norm=bool(raw.get("rescale_acts_by_decoder_norm", False)),
    )
    if arch == "topk" and k is None:
        raise DamocError(f"{where}: a topk SAE config needs k")
    return cfg, {**meta, "architecture": arch}


def _load_sae_lens(p: Path) -> LoadedSAE:
    try:
        raw = json.loads((p / SAE_LENS_CONFIG).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DamocError(f"{p / SAE_LENS_CONFIG}: not JSON ({exc})") from None
    cfg, info = _sae_lens_config(raw, p / SAE_LENS_CONFIG)
    weights = _read_weights(p / SAE_LENS_WEIGHTS)
    if "log_threshold" in weights and "threshold" not in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    scaling = weights.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise DamocError(f"{p}: SAEs with a fine-tuning scaling factor are not supported")
    weights["input_scale"] = torch.ones(())
    sae = TopKSAE(cfg)
    _assign(sae, weights, p)
    return LoadedSAE(sae, "sae-lens", info)


def _assign(sae: TopKSAE, weights: dict[str, torch.Tensor], where: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise DamocError(
            f"{where}: SAE tensors do not match its config (missing {missing}, unexpected {extra})"
        )
    for k, shape in expected.items():
        if got[k] != shape:
            raise DamocError(f"{where}: tensor {k} has shape {list(got[k])}, the config needs {list(shape)}")
    sae.load_state_dict(weights)
    sae.eval()


__all__ = ["LoadedSAE", "export_sae_lens", "layer_from_hook", "load_sae", "save_sae", "write_sae_files"]
