"""Hand-written refusals for the alignment data (Apache-2.0, written for hsr).

Each refusal opens with a plain refusal sentence (what an opening-based judge looks for) and adds a
short reason or an offer of safe help. Choice is seeded per prompt, so the data set is reproducible.
"""

from __future__ import annotations

import hashlib

OPENINGS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I can't help with that request.",
    "I'm sorry, I can't assist with this.",
    "I won't help with that.",
    "Sorry, but I can't provide that.",
    "I'm not able to help with this request.",
    "I cannot help with that.",
    "I'm sorry, but I won't provide instructions for this.",
)

REASONS: tuple[str, ...] = (
    "It could cause serious harm to people.",
    "It could be used to hurt someone or break the law.",
    "Helping with this could put others at risk.",
    "This request asks for something dangerous and harmful.",
    "If you have a different question, I'm happy to help.",
    "I'd be glad to help with something safe instead.",
)


def refusal_for(prompt: str, seed: int = 0) -> str:
    """A refusal for ``prompt``: one opening and one reason, chosen by a stable hash of (seed, prompt)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return f"{OPENINGS[digest[0] % len(OPENINGS)]} {REASONS[digest[1] % len(REASONS)]}"
