"""Examples shared by the token-compression tests: clinical-trial contexts of random words, so that the
tiny scorer sees varied text, and a token counter."""

from __future__ import annotations

import random

from damoc.io.tasks import Example

WORDS = (
    "the patients trial reduced symptoms of chronic pain after twelve weeks in a randomized cohort with "
    "placebo control and the primary outcome was measured by standard scales while adverse events were rare"
).split()


def clinical_examples(n: int, seed: int = 0, min_words: int = 25, extractive: bool = False) -> list[Example]:
    """``n`` examples whose contexts are ``min_words`` to 60 random ``WORDS``; ``extractive`` puts the
    answer in the middle of the context."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, 60)))
        ans = f"reduced by {10 + i}%"
        if extractive:
            words = ctx.split()
            words.insert(len(words) // 2, ans)
            ctx = " ".join(words)
        out.append(
            Example(id=f"e{i}", question=f"Did compound {i} help the patients?", answer=ans, context=ctx)
        )
    return out


def count_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
