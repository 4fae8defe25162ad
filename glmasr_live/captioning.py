"""Hypotheses → caption events: sequence numbers, stream times, status events (pure)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from glmasr_live.events import SAMPLE_RATE, CaptionEvent, Hypothesis, join_text


@dataclass
class CaptionBuilder:
    """Numbers events and puts them on the stream clock.

    ``next_seq``, ``clock_offset`` (seconds) and ``utterance_offset`` continue a journal's
    numbering, time line and utterance ids after a restart; ``wall`` is the wall clock
    (time.time) used for the ``wall_time`` field only.
    """

    next_seq: int = 0
    wall: Callable[[], float] = time.time
    clock_offset: float = 0.0
    utterance_offset: int = 0

    def _seq(self) -> int:
        s = self.next_seq
        self.next_seq += 1
        return s

    def caption(
        self, utterance: int, start_sample: int, hyp: Hypothesis, audio_clock: float, lag: float = 0.0
    ) -> CaptionEvent:
        start = start_sample / SAMPLE_RATE + self.clock_offset
        end = (start_sample + hyp.end_sample) / SAMPLE_RATE + self.clock_offset
        audio_clock += self.clock_offset
        utterance += self.utterance_offset
        if hyp.final:
            text = join_text(hyp.committed, hyp.tentative).strip()
            return CaptionEvent(
                "final", self._seq(), utterance, start, end, text, "", text, audio_clock, self.wall(),
                lag=round(lag, 3),
            )  # fmt: skip
        return CaptionEvent(
            "partial",
            self._seq(),
            utterance,
            start,
            end,
            hyp.committed,
            hyp.tentative,
            join_text(hyp.committed, hyp.tentative),
            audio_clock,
            self.wall(),
            lag=round(lag, 3),
        )

    def status(self, code: str, message: str, audio_clock: float, lag: float = 0.0) -> CaptionEvent:
        audio_clock += self.clock_offset
        return CaptionEvent(
            "status", self._seq(), -1, audio_clock, audio_clock, "", "", "", audio_clock, self.wall(),
            status=code, message=message, lag=round(lag, 3),
        )  # fmt: skip
