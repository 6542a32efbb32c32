"""Check each zoo model after conversion: load time, a greedy answer, and loss on PubMedQA contexts.

    python benchmarks/zoo_models.py [NAME ...] [--n-texts 32] [--max-length 256]

Loss: mean next-token cross-entropy (nats/token) on the first ``n_texts`` contexts of the bundled
PubMedQA set, each cut to ``max_length`` tokens (per token; bits per byte
would compare across tokenizers but doubles the time on a shared CPU). Writes benchmarks/records/zoo/<name>.json and prints a table. Models are fetched if absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from damoc.evaluate.likelihood import text_loss
from damoc.io.files import write_json_atomic
from damoc.io.tasks import builtin_path, read_rows
from damoc.model.arch import load_model
from damoc.zoo import ZOO, resolve_zoo_model

RECORDS = Path(__file__).parent / "records" / "zoo"
PROMPT = "What is the capital of France? Answer in one sentence."


def greedy_answer(model, tok, prompt: str, max_new_tokens: int = 24) -> str:
    """Greedy reply through the chat template, or a plain Q/A completion for a base model without one."""
    if tok.chat_template:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
        )
        ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    else:
        ids = tok(f"Question: {prompt}\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return tok.decode(out[0][ids.shape[1] :], skip_special_tokens=True).strip()


def check(name: str, n_texts: int, max_length: int, batch_size: int) -> dict:
    path = resolve_zoo_model(name)
    record = json.loads((path / "damoc_zoo.json").read_text())
    t0 = time.perf_counter()
    model, tok = load_model(path)
    load_s = time.perf_counter() - t0
    answer = greedy_answer(model, tok, PROMPT)
    texts = [r["context"] for r in read_rows(builtin_path("pubmedqa"))[:n_texts]]
    t0 = time.perf_counter()
    with torch.no_grad():
        loss = text_loss(model, tok, texts, max_length=max_length, batch_size=batch_size)
    eval_s = time.perf_counter() - t0
    return {
        "name": name,
        "path": str(path),
        "architecture": record["architecture"],
        "layers": record["layers"],
        "params": record["params"],
        "tied_embeddings": record["tied_embeddings"],
        "dtype": record["dtype"],
        "convert_seconds": record["convert_seconds"],
        "load_seconds": round(load_s, 2),
        "pubmedqa_contexts": n_texts,
        "max_length": max_length,
        "loss_nats_per_token": round(loss, 4),
        "eval_seconds": round(eval_s, 1),
        "prompt": PROMPT,
        "greedy_answer": answer,
        "chat_template": bool(tok.chat_template),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=ZOO.names())
    ap.add_argument("--n-texts", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    rows = []
    for name in args.names:
        row = check(name, args.n_texts, args.max_length, args.batch_size)
        write_json_atomic(RECORDS / f"{name}.json", row)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| model | arch | layers | params | convert s | loss (nats/tok) | answer |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['architecture']} | {r['layers']} | {r['params'] / 1e6:.1f}M | {r['convert_seconds']:.0f} "
            f"| {r['loss_nats_per_token']:.3f} | {r['greedy_answer'][:40]} |"
        )


if __name__ == "__main__":
    main()
