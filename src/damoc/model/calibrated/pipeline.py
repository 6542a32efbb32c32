"""The sequential, layer-by-layer compression pipeline (orchestration only; the math is in the methods).

1. Capture the inputs of every decoder block once: each block is swapped for a catcher that records the
   keyword arguments the model passes to it (attention mask, position embeddings, ... — they differ per
   block in Gemma3) and the hidden states entering block 0; the last catcher stops the forward pass.
2. For each block: hook every ``nn.Linear`` inside to accumulate ``Σ x xᵀ`` per calibration source,
   mix the sources' Hessians, compress each linear, then run the COMPRESSED block to produce the
   inputs of the next block. Only one block's activations (per source) are held at a time.

With an accelerator ``device`` and the model in CPU memory, the blocks stay on the CPU and visit the
device one at a time (the embeddings and the rest of the trunk sit on it throughout), so the device needs
room for one block, its Hessians and the calibration activations, not the whole model: a 7B model in
bf16 fits a 24 GB GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.logging_utils import progress
from damoc.model.arch import decoder_layers, find_layers_path
from damoc.model.calibrated.hessian import HessianStats, gram_of, mix_hessians, relative_error
from damoc.model.calibrated.masks import sparsity_of
from damoc.model.calibrated.methods import METHODS, QuantPayload, method_family
from damoc.model.calibrated.obs import shared_factors

LOG = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the last catcher to end the capture pass."""


@dataclass
class LayerStats:
    name: str  # module path inside the model, e.g. model.layers.3.mlp.down_proj
    shape: tuple[int, int]
    sparsity: float  # fraction of exact zeros after compression
    rel_error: float | None  # tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) under the mixed H (None without the full H)
    seconds: float


@dataclass
class CompressionResult:
    method: str
    family: str
    weights: dict[str, float]  # mixing weight of each calibration source
    tokens: dict[str, int]  # calibration tokens per source
    layers: list[LayerStats] = field(default_factory=list)
    wall_s: float = 0.0
    payloads: dict[str, QuantPayload] = field(default_factory=dict, repr=False)

    @property
    def sparsity(self) -> float:
        n = sum(s.shape[0] * s.shape[1] for s in self.layers)
        return sum(s.sparsity * s.shape[0] * s.shape[1] for s in self.layers) / max(1, n)


@dataclass
class _BlockInputs:
    hidden: list[torch.Tensor]  # per batch: hidden states entering the current block
    kwargs: list[list[dict[str, Any]]]  # per batch, per block: keyword arguments the model passed


def _block_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, seqs: torch.Tensor, batch_size: int, device: torch.device | None = None
) -> _BlockInputs:
    """Run the model's embedding and mask/position set-up on ``seqs`` and record what each block receives
    (on ``device``, where the embeddings are; default: where the model's first parameter is)."""
    layers = decoder_layers(model)
    device = device if device is not None else next(model.parameters()).device
    records: list[dict[str, Any]] = []
    hidden0: list[torch.Tensor] = []

    def catcher(idx: int):
        def forward(*args, **kwargs):
            hs = args[0] if args else kwargs.pop("hidden_states")
            kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            if len(args) > 1:
                raise DamocError(
                    "a decoder block got extra positional arguments: this architecture is not supported"
                )
            if idx == 0:
                hidden0.append(hs.detach())
            records[-1][idx] = kw
            if idx == len(layers) - 1:
                raise _Stop
            return hs

        return forward

    batches_kw: list[list[dict[str, Any]]] = []
    try:
        for i, layer in enumerate(layers):
            layer.forward = catcher(i)
        for b in range(0, seqs.shape[0], batch_size):
            records.append({})
            try:
                model(input_ids=seqs[b : b + batch_size].to(device), use_cache=False)
            except _Stop:
                pass
            batches_kw.append([records[-1][i] for i in range(len(layers))])
    finally:
        for layer in layers:
            if "forward" in layer.__dict__:
                del layer.forward  # back to the class's forward
    return _BlockInputs(hidden=hidden0, kwargs=batches_kw)


class _GramHooks:
    """Forward hooks that add each linear's input Gram matrix to the statistics of the active source.

    Linears fed the same tensor (q/k/v, gate/up) share one ``xᵀx`` product per call. With
    ``diagonal`` only ``Σ x²`` per input channel is accumulated (methods that need no more).
    """

    def __init__(self, linears: Mapping[str, nn.Linear], sources: list[str], diagonal: bool = False):
        self.diagonal = diagonal
        self.stats = {
            s: {n: HessianStats.zeros(m.in_features, m.weight.device, diagonal) for n, m in linears.items()}
            for s in sources
        }
        self.source = sources[0]
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, int, str]] = {}
        self.group: dict[str, str] = {}  # linear -> the first linear that read the same input tensor
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in linears.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            x = inputs[0]
            key = id(x)
            if key not in self._cache:
                x2 = x.detach().reshape(-1, x.shape[-1]).float()
                # holding x keeps its id unique
                self._cache[key] = (x, gram_of(x2, self.diagonal), x2.shape[0], name)
            _, gram, n, first = self._cache[key]
            self.group.setdefault(name, first)
            self.stats[self.source][name].add_gram(gram, n)

        return hook

    def clear_cache(self) -> None:
        self._cache.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._cache.clear()


@contextlib.contextmanager
def trunk_on(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Everything but the decoder blocks (embeddings, norms, rotary tables, head) on ``device`` for the
    duration; the blocks stay where they are. Afterwards the trunk goes back where it was."""
    prefix = find_layers_path(model)
    parent_path, attr = prefix.rsplit(".", 1)
    parent = model.get_submodule(parent_path)
    layers = getattr(parent, attr)
    home = next((p.device for n, p in model.named_parameters() if not n.startswith(prefix + ".")), None)
    setattr(parent, attr, nn.ModuleList())
    try:
        model.to(device)
    finally:
        setattr(parent, attr, layers)
    try:
        yield
    finally:
        if home is not None:
            setattr(parent, attr, nn.ModuleList())
            try:
                model.to(home)
            finally:
                setattr(parent, attr, layers)


def _on_cpu(payload: QuantPayload) -> QuantPayload:
    return dataclasses.replace(
        payload,
        codes=payload.codes.cpu(),
        scales=payload.scales.cpu(),
        zeros=payload.zeros.cpu(),
        g_idx=payload.g_idx.cpu(),
    )


def _linears(block: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}


def _run_block(
    block: nn.Module, inputs: _BlockInputs, idx: int, hooks: _GramHooks | None = None
) -> list[torch.Tensor]:
    outs = []
    for b, hs in enumerate(inputs.hidden):
        outs.append(_block_output(block(hs, **inputs.kwargs[b][idx])))
        if hooks is not None:
            hooks.clear_cache()
    return outs


@torch.no_grad()
def compress_model(
    model: nn.Module,
    calibration: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    method: str,
    spec: Any,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    offload: bool | None = None,
) -> CompressionResult:
    """Compress every linear layer of every decoder block of ``model`` in place, block by block.

    ``calibration`` maps a source name to its token windows (n, length); ``weights`` gives each source's
    mixing weight (sources with weight 0 are not run at all). Returns per-layer statistics and, for
    quantization methods, the integer payloads keyed by module path (on the CPU).

    ``device`` is where the work runs (default: where the model is). With ``offload`` (default: when
    ``device`` is not where the model is) each block moves to ``device`` for its turn and back after it.
    """
    home = next(model.parameters()).device
    exec_dev = torch.device(device) if device is not None else home
    if offload is None:
        same = exec_dev.type == home.type and exec_dev.index in (None, home.index)
        offload = not same
    with trunk_on(model, exec_dev) if offload else contextlib.nullcontext():
        return _compress_blocks(model, calibration, weights, method, spec, batch_size, exec_dev, offload)


def _compress_blocks(
    model: nn.Module,
    calibration: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    method: str,
    spec: Any,
    batch_size: int,
    exec_dev: torch.device,
    offload: bool,
) -> CompressionResult:
    fn = METHODS.get(method)
    family = method_family(method)
    needs_data = getattr(fn, "needs_calibration", True)
    diagonal = getattr(fn, "statistic", "full") == "diagonal"
    active = [s for s, w in weights.items() if w > 0]
    if needs_data and not active:
        raise DamocError("no calibration source has a positive weight")
    for s in active if needs_data else []:
        if s not in calibration:
            raise DamocError(f"calibration source '{s}' has a weight but no text")
    prefix = find_layers_path(model)
    layers = decoder_layers(model)
    t0 = time.perf_counter()
    result = CompressionResult(
        method=method,
        family=family,
        weights={s: float(weights[s]) for s in active},
        tokens={s: int(calibration[s].numel()) for s in active} if needs_data else {},
    )
    use_cache = getattr(model.config, "use_cache", None)
    try:
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        inputs = (
            {s: capture_block_inputs(model, calibration[s], batch_size, exec_dev) for s in active}
            if needs_data
            else {}
        )
        for idx, block in enumerate(progress(layers, desc=f"{method} blocks", unit="block")):
            block_home = next(block.parameters()).device
            if offload:
                block.to(exec_dev)
            linears = _linears(block)
            hooks = None
            if needs_data:
                hooks = _GramHooks(linears, active, diagonal)
                for s in active:
                    hooks.source = s
                    _run_block(block, inputs[s], idx, hooks)
                hooks.remove()
            mixed: dict[str, torch.Tensor] = {}  # one H per input tensor: q/k/v (and gate/up) share it
            with shared_factors():  # linears given the same H share its factorization
                for name, lin in linears.items():
                    t1 = time.perf_counter()
                    h = None
                    if hooks is not None:
                        g = hooks.group.get(name, name)
                        if g not in mixed:
                            mixed[g] = mix_hessians({s: hooks.stats[s][g] for s in active}, result.weights)
                        h = mixed[g]
                    w = lin.weight.data
                    out = fn(w, h, spec)
                    err = relative_error(w, out.weight, h) if h is not None and h.dim() == 2 else None
                    lin.weight.data.copy_(out.weight.to(w.dtype))
                    full = f"{prefix}.{idx}.{name}"
                    if out.quant is not None:
                        result.payloads[full] = _on_cpu(out.quant)
                    result.layers.append(
                        LayerStats(
                            full, tuple(w.shape), sparsity_of(lin.weight.data), err, time.perf_counter() - t1
                        )
                    )
            if hooks is not None:
                del hooks
                for s in active:
                    inputs[s].hidden = _run_block(block, inputs[s], idx)
            if offload:
                block.to(block_home)
    finally:
        if use_cache is not None:
            model.config.use_cache = use_cache
    result.wall_s = time.perf_counter() - t0
    LOG.info(
        "%s: %d layers in %.1fs (sparsity %.3f)", method, len(result.layers), result.wall_s, result.sparsity
    )
    return result
