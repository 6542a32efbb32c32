"""Tiny random models and tokenizers for tests and examples (seconds on a CPU, no download)."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_ARCHS = ("llama", "qwen2", "qwen3", "gemma3_text", "mistral", "phi3")


def tiny_tokenizer():
    """A byte-level tokenizer with the 256 byte symbols plus specials: any text encodes, nothing downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(alphabet))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_config(arch: str, n_layers: int = 4, vocab_size: int = 260, hidden: int = 32, **overrides):
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    if arch == "gemma3_text":
        common.update(head_dim=8, sliding_window=16, query_pre_attn_scalar=8)
        common["layer_types"] = [
            "sliding_attention" if (i + 1) % 3 else "full_attention" for i in range(n_layers)
        ]
    if arch == "qwen3":
        common.update(head_dim=8)
    if arch == "mistral":
        common.update(sliding_window=None)
    common.update(overrides)
    return AutoConfig.for_model(arch, **common)


def tiny_model(arch: str = "llama", n_layers: int = 4, seed: int = 0, **overrides):
    """A randomly initialised causal LM of ``arch`` in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, n_layers, **overrides), dtype=torch.float32)
    # Random init gives near-zero weights in some archs; widen them so layers differ measurably.
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
            elif "norm" in name and arch != "gemma3_text":
                p.fill_(1.0)
    model.eval()
    return model


def save_tiny_model(
    path: str | Path, arch: str = "llama", n_layers: int = 4, seed: int = 0, **overrides
) -> Path:
    """Write a tiny random model and its tokenizer as a Hugging Face directory."""
    path = Path(path)
    model = tiny_model(arch, n_layers, seed, **overrides)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
