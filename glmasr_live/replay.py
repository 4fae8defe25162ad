"""A recording through segmenter and streaming decoder, on a simulated or a real-time clock.

Used by ``transcribe --mode streaming``, ``eval`` and ``bench``. On the simulated clock the
audio is replayed as fast as the model allows, yet every event carries the audio clock it would
have been emitted at live: a step that starts when the stream is at t and takes d seconds
emits at t + d, and audio keeps arriving meanwhile. With ``realtime`` the clock is the wall
clock since the start, as with a microphone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from glmasr_live.audio.segmenter import Segmenter, SegmenterSettings
from glmasr_live.captioning import CaptionBuilder
from glmasr_live.events import SAMPLE_RATE, CaptionEvent, SpeechEnd, SpeechStart

FRAME = SAMPLE_RATE * 30 // 1000  # the segmenter's 30 ms frame


class SimulatedClock:
    """Seconds of stream audio available; advances only by waiting for audio or by compute."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def spent(self, seconds: float) -> None:
        self.t += seconds


class RealtimeClock:
    """The wall clock since start: audio time t is available once t seconds have passed."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self._never = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def wait_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            self._never.wait(delay)  # pacing the replay itself, not waiting for a result

    def spent(self, seconds: float) -> None:
        pass  # the wall clock moved by itself


@dataclass(frozen=True)
class ReplaySettings:
    """Fields:
    interval_s: target time between partial steps; the real interval is never shorter than a
        step takes (a step starts only when the previous one is done: nothing queues up).
    realtime: pace the replay on the wall clock.
    partials: emit partial captions (False: finals only).
    """

    interval_s: float = 0.5
    realtime: bool = False
    partials: bool = True


def replay(
    audio: np.ndarray,
    decoder,
    settings: ReplaySettings | None = None,
    segmenter: SegmenterSettings | None = None,
    builder: CaptionBuilder | None = None,
) -> Iterator[CaptionEvent]:
    """Yield caption events for ``audio`` (16 kHz mono) as they would appear live."""
    st = settings or ReplaySettings()
    seg = Segmenter(segmenter)
    clock = RealtimeClock() if st.realtime else SimulatedClock()
    build = builder or CaptionBuilder()
    n = len(audio)
    pos = 0  # samples fed to the segmenter
    utt: SpeechStart | None = None
    fed = 0  # absolute index up to which the decoder has the utterance's audio
    next_step = 0

    def finish(end: SpeechEnd) -> CaptionEvent:
        nonlocal utt
        assert utt is not None
        decoder.feed(audio[fed : end.sample])
        hyp = decoder.finish()
        clock.spent(hyp.step_seconds)
        ev = build.caption(utt.utterance, utt.sample, hyp, clock.now())
        utt = None
        return ev

    while pos < n:
        clock.wait_until((pos + FRAME) / SAMPLE_RATE)
        target = min(n, max(pos + FRAME, int(clock.now() * SAMPLE_RATE)))
        records = seg.feed(audio[pos:target])
        pos = target
        for r in records:
            if isinstance(r, SpeechStart):
                utt, fed = r, r.sample
                decoder.start()
                next_step = r.sample + int(st.interval_s * SAMPLE_RATE)
            elif utt is not None:
                yield finish(r)
        if utt is not None and st.partials and pos >= next_step:
            decoder.feed(audio[fed:pos])
            fed = pos
            hyp = decoder.step()
            clock.spent(hyp.step_seconds)
            yield build.caption(utt.utterance, utt.sample, hyp, clock.now())
            # adaptive pacing: the next step waits for the interval or for this step, whichever is later
            next_step = max(pos + int(st.interval_s * SAMPLE_RATE), int(clock.now() * SAMPLE_RATE))
    for r in seg.flush():
        if isinstance(r, SpeechEnd) and utt is not None:
            yield finish(r)
