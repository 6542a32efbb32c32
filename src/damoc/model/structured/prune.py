"""Plan uniform per-layer sizes for a target parameter ratio, pick the units to keep, slice the model.

The math (:func:`plan_sizes`, :func:`keep_top`, :func:`keep_query_heads`) takes numbers and tensors;
:func:`structured_prune` does the plumbing (gradients, slicing modules through the layer's layout in
``groups``, updating the config).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.model.arch import decoder_layers, text_config
from damoc.model.structured.config import StructuredPruneConfig
from damoc.model.structured.groups import AttentionShape, LayerModules, attention_shape, layer_modules
from damoc.model.structured.importance import IMPORTANCE, LayerScores, accumulate_gradients, group_scores

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitCosts:
    """Parameters that one unit removes from ONE layer, and how many units a layer has."""

    n_layers: int
    head_params: int  # one query head (q rows + bias, o columns)
    kv_params: int  # one KV head alone (k and v rows + biases)
    channel_params: int  # one MLP channel
    shape: AttentionShape
    intermediate: int


@dataclass(frozen=True)
class SizePlan:
    kv_heads: int  # kept per layer
    heads_per_group: int  # kept query heads per KV group
    intermediate: int  # kept MLP channels per layer
    removed_params: int

    @property
    def num_attention_heads(self) -> int:
        return self.kv_heads * self.heads_per_group


def plan_sizes(costs: UnitCosts, total_params: int, cfg: StructuredPruneConfig) -> SizePlan:
    """Uniform kept sizes that remove ``cfg.ratio`` of ``total_params``.

    Attention and MLP lose the same fraction of their parameters; the head count is rounded to whole
    units and the MLP width absorbs the difference (then rounded to ``cfg.channel_multiple``).
    """
    sh, L = costs.shape, costs.n_layers
    target = cfg.ratio * total_params
    r = sh.group_size
    attn_layer = sh.n_heads * costs.head_params + sh.n_kv * costs.kv_params
    mlp_layer = costs.intermediate * costs.channel_params
    prunable = L * ((attn_layer if cfg.prune_attention else 0) + mlp_layer)
    frac = target / prunable
    if frac >= 1.0:
        raise DamocError(
            f"ratio {cfg.ratio} would remove {target:,.0f} parameters but only {prunable:,.0f} are prunable "
            f"(embeddings and norms are kept); use a smaller --ratio"
        )
    kv, per_group = sh.n_kv, r
    if cfg.prune_attention:
        if cfg.attention_unit == "kv_groups":
            kv = min(sh.n_kv, max(1, sh.n_kv - round(frac * sh.n_kv)))
        else:
            per_group = min(r, max(1, r - round(frac * r)))
    attn_removed = L * ((sh.n_heads - kv * per_group) * costs.head_params + (sh.n_kv - kv) * costs.kv_params)
    left = max(0.0, target - attn_removed)
    m = cfg.channel_multiple
    keep = costs.intermediate - left / (L * costs.channel_params)
    keep = int(round(keep / m) * m)
    keep = min(costs.intermediate, max(m, keep))
    removed = attn_removed + L * (costs.intermediate - keep) * costs.channel_params
    return SizePlan(kv_heads=kv, heads_per_group=per_group, intermediate=keep, removed_params=int(removed))


def keep_top(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` highest scores, in increasing index order (ties: lower index wins)."""
    order = torch.sort(-scores.double(), stable=True).indices[:n]
    return torch.sort(order).values


def keep_query_heads(
    scores: LayerScores, plan: SizePlan, shape: AttentionShape
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept KV groups, kept query heads) for one layer: best groups, then best heads within each."""
    groups = keep_top(scores.kv_groups, plan.kv_heads)
    r = shape.group_size
    heads = []
    for g in groups.tolist():
        within = keep_top(scores.query_heads[g], plan.heads_per_group)
        heads.append(g * r + within)
    return groups, torch.cat(heads)


def unit_costs(mods: LayerModules, shape: AttentionShape, n_layers: int) -> UnitCosts:
    """Parameters one unit removes from one layer, from the layer's logical projection sizes."""
    size = mods.logical_sizes()
    hd = shape.head_dim

    def row(name: str) -> int:  # one output row of a projection: its inputs and its bias
        _, n_in, bias = size[name]
        return n_in + int(bias)

    head = hd * row("q_proj") + hd * size["o_proj"][0]
    kv = hd * (row("k_proj") + row("v_proj"))
    ch = row("gate_proj") + row("up_proj") + size["down_proj"][0]
    return UnitCosts(n_layers, head, kv, ch, shape, size["gate_proj"][0])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class PruneReport:
    """What one structured-pruning run did (serialised next to the checkpoint as pruning.json)."""

    model_type: str
    ratio_target: float
    ratio_achieved: float
    params_before: int
    params_after: int
    num_attention_heads: tuple[int, int]  # (before, after)
    num_key_value_heads: tuple[int, int]
    intermediate_size: tuple[int, int]
    head_dim: int
    importance: str
    attention_unit: str
    calibration_texts: int
    calibration_tokens: int
    wall_s: float
    config: dict = field(default_factory=dict)
    kept_heads: list[list[int]] = field(default_factory=list)  # per layer

    def to_dict(self) -> dict:
        return asdict(self)


def _check_uniform(mods_list: Sequence[LayerModules], model_type: str) -> None:
    first = mods_list[0].logical_sizes()
    for i, mods in enumerate(mods_list[1:], 1):
        shapes = mods.logical_sizes()
        if shapes != first:
            raise DamocError(f"layer {i} of this '{model_type}' model has different sizes from layer 0")


@torch.no_grad()
def _layer_scores(
    mods: LayerModules, shape: AttentionShape, method: str, gen: torch.Generator
) -> LayerScores:
    score = IMPORTANCE.get(method)
    return group_scores(mods.element_scores(lambda w, g: score.fn(w, g, gen)), shape)


def structured_prune(
    model: nn.Module, tok, texts: Sequence[str], cfg: StructuredPruneConfig | None = None
) -> PruneReport:
    """Prune ``model`` in place to ``cfg.ratio`` fewer parameters; returns what was done.

    ``texts`` are the (curated, in-domain) calibration texts the Taylor importance is computed on.
    """
    cfg = cfg or StructuredPruneConfig()
    t0 = time.perf_counter()
    conf = text_config(model.config)
    model_type = str(getattr(conf, "model_type", "?"))
    layers = decoder_layers(model)
    shape = attention_shape(conf)
    mods_list = [layer_modules(layer, model_type, shape) for layer in layers]
    _check_uniform(mods_list, model_type)
    costs = unit_costs(mods_list[0], shape, len(layers))
    before = count_params(model)
    plan = plan_sizes(costs, before, cfg)
    method = IMPORTANCE.entry(cfg.importance)
    n_tokens, used = 0, 0
    if method.obj.needs_grad:
        texts = list(texts)[: cfg.samples]
        if not texts:
            raise DamocError("Taylor importance needs calibration texts (pass --data)")
        params = [p for mods in mods_list for lin in mods.linears().values() for p in lin.parameters()]
        torch.manual_seed(cfg.seed)
        n_tokens = accumulate_gradients(model, tok, texts, params, cfg.max_length, cfg.batch_size)
        used = len(texts)
    gen = torch.Generator().manual_seed(cfg.seed)
    kept_heads = []
    for mods in mods_list:
        scores = _layer_scores(mods, shape, method.name, gen)
        groups, heads = keep_query_heads(scores, plan, shape)
        channels = keep_top(scores.channels, plan.intermediate)
        for lin in mods.linears().values():
            for p in lin.parameters():
                p.grad = None
        mods.prune(shape, groups, heads, channels)
        kept_heads.append(heads.tolist())
    for p in model.parameters():
        p.grad = None
        p.requires_grad_(True)
    conf.num_attention_heads = plan.num_attention_heads
    conf.num_key_value_heads = plan.kv_heads
    conf.head_dim = shape.head_dim
    conf.intermediate_size = plan.intermediate
    after = count_params(model)
    report = PruneReport(
        model_type=model_type,
        ratio_target=cfg.ratio,
        ratio_achieved=1 - after / before,
        params_before=before,
        params_after=after,
        num_attention_heads=(shape.n_heads, plan.num_attention_heads),
        num_key_value_heads=(shape.n_kv, plan.kv_heads),
        intermediate_size=(costs.intermediate, plan.intermediate),
        head_dim=shape.head_dim,
        importance=method.name,
        attention_unit=cfg.attention_unit,
        calibration_texts=used,
        calibration_tokens=n_tokens,
        wall_s=time.perf_counter() - t0,
        config=cfg.model_dump(),
        kept_heads=kept_heads,
    )
    LOG.info(
        "pruned %s: %s -> %s parameters (%.1f%% removed; heads %d->%d, kv %d->%d, mlp %d->%d)",
        model_type,
        f"{before:,}",
        f"{after:,}",
        100 * report.ratio_achieved,
        shape.n_heads,
        plan.num_attention_heads,
        shape.n_kv,
        plan.kv_heads,
        costs.intermediate,
        plan.intermediate,
    )
    if math.isnan(report.ratio_achieved):  # pragma: no cover - defensive
        raise DamocError("pruning produced an empty model")
    return report
