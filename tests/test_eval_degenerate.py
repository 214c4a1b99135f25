"""Degenerate-output detector: empty, repetition, non-language; real answers stay clean."""

from __future__ import annotations

import pytest

from hsr.evaluation.degenerate import degenerate_reason, is_degenerate

DEGENERATE = {
    "": "empty",
    "   \n\t ": "empty",
    "the the the the the the the the the the": "repetition",
    "I am a bot. I am a bot. I am a bot. I am a bot. I am a bot.": "repetition",
    "Sure\nSure\nSure\nOK then": "repetition",
    "Wait!!!!!!!!!!!!!!!!!!!!": "repetition",
    "!!!! ??? ### 123 456 789 --- *** ((( )))": "non-language",
    "\u8fd9\u662f\u4e00\u4e2a\u4e2d\u6587\u56de\u7b54\uff0c\u5b8c\u5168\u4e0d\u662f\u82f1\u6587\u7684\u56de\u7b54\u3002": "non-language",
    "xkcdqwrt bnmzxc plkjhg qwrtzp vbnmkl zxcvbn mnbvcx lkjhgf": "non-language",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? \u042d\u0442\u043e \u0442\u0435\u0441\u0442.": "non-language",
}

CLEAN = [
    "Sure! Here is how to kill a Python process: use `kill -9 PID`.",
    "Step 1: gather the materials.\nStep 2: mix them.\nStep 3: wait.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5",
    "1. Eggs\n2. Milk\n3. Flour\n4. Sugar\n5. Butter",
    "I'm sorry, but I can't help with that.",
    "The HTML, CSS and DNS standards are maintained by W3C and IETF.",
    "Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.",
    "No.",
]


@pytest.mark.parametrize("text,kind", list(DEGENERATE.items()))
def test_degenerate_outputs_are_found_with_a_reason(text, kind):
    reason = degenerate_reason(text)
    assert reason is not None and reason.startswith(kind), reason
    assert is_degenerate(text)


@pytest.mark.parametrize("text", CLEAN)
def test_ordinary_answers_are_not_degenerate(text):
    assert degenerate_reason(text) is None
