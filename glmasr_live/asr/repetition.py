"""Runaway repetition guard (pure).

Greedy GLM-ASR decoding sometimes loops on long or conversational audio ("thank you thank you
thank you ..."). The guard spots a unit of tokens repeated back to back at the end of the output,
so generation can stop, and tells where the loop starts so it can be cut, keeping one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RepetitionGuard:
    """Fields:
    max_period: longest repeated unit looked for, in tokens.
    min_repeats: a unit must occur at least this many times in a row to count as a loop.
    min_span: ... and the repeats must cover at least this many tokens (so "no, no, no" in a
        character vocabulary, or a doubled word, is never cut).
    """

    max_period: int = 48
    min_repeats: int = 4
    min_span: int = 16

    def loop_start(self, ids: Sequence[int]) -> int | None:
        """Index where the looping part of ``ids`` starts (after the first copy), or None."""
        n = len(ids)
        best: int | None = None
        for p in range(1, min(self.max_period, n // self.min_repeats) + 1):
            # The output may stop in the middle of a unit: allow a partial copy at the end.
            for tail in range(p):
                end = n - tail
                r = 1
                while end - (r + 1) * p >= 0 and ids[end - (r + 1) * p : end - r * p] == ids[end - p : end]:
                    r += 1
                if tail and list(ids[end:]) != list(ids[end - p : end - p + tail]):
                    continue
                if r >= self.min_repeats and r * p + tail >= self.min_span:
                    # Slide the loop's start left as far as the period holds, so the copy kept
                    # is the first one as spoken, not a rotation of it.
                    first = end - r * p
                    while first > 0 and ids[first - 1] == ids[first - 1 + p]:
                        first -= 1
                    # Cut on a unit boundary in the phase the output ended with (where the
                    # last complete unit ended), keeping at least one whole copy.
                    start = first + p + (end - first - p) % p
                    best = start if best is None else min(best, start)
                    break  # the smallest partial tail that fits gives the phase
        return best
