"""Write the sae-lens reference SAEs that tests/test_sae.py loads (run with a Python that has sae-lens).

Each folder is what ``SAE.save_model`` writes (``cfg.json`` + ``sae_weights.safetensors``), plus
``reference.safetensors``: inputs ``x`` and the latents sae-lens's own ``encode`` gives for them, so the
test checks damoc's reader against sae-lens's encoder, not against itself.

    python tests/data/sae_lens/make_reference.py     # needs sae-lens (not a damoc dependency)
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
D_IN, D_SAE = 16, 64


def _fill(sae, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if name != "threshold" else 0.1))
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()


def main() -> None:
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    meta = {"model_name": "tiny-llama", "hook_name": "blocks.1.hook_resid_post"}
    saes = {
        "topk": TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6, metadata=SAEMetadata(**meta))),
        "topk_rescaled": TopKSAE(
            TopKSAEConfig(
                d_in=D_IN, d_sae=D_SAE, k=6, rescale_acts_by_decoder_norm=True, metadata=SAEMetadata(**meta)
            )
        ),
        "standard": StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=SAEMetadata(**meta))),
        "jumprelu": JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=SAEMetadata(**meta))),
    }
    x = torch.randn(10, D_IN, generator=torch.Generator().manual_seed(99))
    for i, (name, sae) in enumerate(saes.items()):
        _fill(sae, i)
        out = HERE / name
        sae.save_model(out)
        with torch.no_grad():
            z = sae.encode(x)
        save_file({"x": x.contiguous(), "latents": z.contiguous()}, out / "reference.safetensors")
        print(name, "->", out, "active per row:", (z > 0).sum(1).tolist())


if __name__ == "__main__":
    main()
