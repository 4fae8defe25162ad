"""Scripted answers for benchmarks with random weights (the decoder's ``answer`` hook).

A full-size model with random weights emits nonsense of random length, so a benchmark would time
text that never grows or agrees. A ``ScriptedAnswer`` makes the answer the first
``rate * seconds`` tokens of a fixed script instead of the argmax: each token still costs its
forward pass, and text grows and agrees as speech would. The decoder knows nothing of scripts;
it asks its ``answer`` (an ``AnswerOverride``, see asr/streaming.py) when one is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from glmasr_live.events import SAMPLE_RATE


class ScriptedAnswer:
    """``script[: rate * seconds]`` as the answer to the utterance's first ``seconds`` of audio."""

    def __init__(self, script: Sequence[int], rate: float):
        self.script = list(script)
        self.rate = rate
        self._retired = 0  # script tokens already set aside with retired blocks

    def reset(self) -> None:
        self._retired = 0

    def _end(self, samples: int) -> int:
        """How many of the script's tokens (after the retired ones) cover audio up to ``samples``."""
        return int(samples / SAMPLE_RATE * self.rate) - self._retired

    def budget(self, samples: int, forced: int) -> int:
        return self._end(samples) - forced

    def tokens(self, forced: int, budget: int) -> list[int]:
        first = self._retired + forced
        return self.script[first : first + budget]

    def settled(self, samples: int, forced: int) -> int | None:
        """Closed blocks up to ``samples``: their share of the script is settled."""
        m = self._end(samples)
        return m if 0 <= m <= forced else None

    def retire(self, count: int) -> None:
        self._retired += count
