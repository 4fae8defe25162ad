"""One stream's captioning policy, with no I/O: segmenter → utterances → decode work → captions.

Fed audio (and the stream clock), a ``StreamPolicy`` runs the segmenter, keeps the audio its
utterances need, and says what decode step it wants next (``take``): the oldest pending final
first, else a partial of the open utterance once the partial interval has passed. The step's
audio travels with the work item. ``complete`` turns the step's hypothesis into caption events.

The pacing rules live here and only here, for the live command, file replay, eval, the benchmark
and the server alike:
- at most one step of a stream is in flight, so a partial always covers the newest audio
  (latest partial wins: a stale partial is never queued);
- the next partial is due ``interval_s`` after the audio of the last one, and never before the
  last step's result came (the interval adapts to step time: nothing queues up);
- finals are queued in order and never dropped; while a final is pending, no partial of a later
  utterance is taken;
- a stream whose last step took longer than ``max_lag_s`` is behind: it sheds partials (never
  finals), says so in a ``behind`` status event, and every event carries its ``lag``.

``CaptionBuilder`` (pure too) numbers the events and puts them on the stream clock; the server's
rooms, file replay and the offline path use it on its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glmasr_live.audio.segmenter import Segmenter, SegmenterSettings
from glmasr_live.events import (
    SAMPLE_RATE,
    CaptionEvent,
    Hypothesis,
    SpeechEnd,
    SpeechStart,
    Work,
    WorkKind,
    fallback_final,
    join_text,
)
from glmasr_live.gate import GateSettings, GateVerdict, apply
from glmasr_live.option_table import INTERVAL_S


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


@dataclass(frozen=True)
class PolicySettings:
    """Fields:
    interval_s: target time between partial steps (see the module docstring for the pacing).
    partials: take partial steps at all (False: finals only).
    max_lag_s: a stream whose steps take longer than this is behind and sheds partials.
    keep_s: audio kept before the segmenter's position (the pre-roll of an onset the
        segmenter confirms late).
    behind_report_s: stream seconds between two ``behind`` status events.
    live: the audio arrives in real time, so falling behind it is reported; False for a
        source that waits for the stream (a file read as fast as it goes, a pipe).
    gate: the caption gate's thresholds (``gate.py``; it acts only where the segmenter
        doubts an utterance).
    """

    interval_s: float = INTERVAL_S
    partials: bool = True
    max_lag_s: float = 3.0
    keep_s: float = 6.0
    behind_report_s: float = 10.0
    live: bool = True
    gate: GateSettings = GateSettings()


@dataclass
class _Utterance:
    utterance: int
    start: int
    end: int | None = None
    fed: int = -1  # absolute sample up to which the decoder has this utterance's audio (-1: none)
    last: Hypothesis | None = None
    shown: bool = False  # a partial with text went out (its final must follow, even if empty)
    sure: bool | None = None  # the segmenter's word on it at its end (SpeechEnd.sure)


@dataclass
class PolicyStats:
    steps: int = 0
    shed_partials: int = 0  # partial steps due at the interval that did not happen
    last_step_s: float = 0.0
    rtf: float = 0.0
    lag_s: float = 0.0
    max_lag_s: float = 0.0
    gated_partials: int = 0  # hypotheses the caption gate hid (gate.py)
    gated_finals: int = 0


class _Audio:
    """The stream's recent audio as chunks with absolute sample indices."""

    def __init__(self, start: int) -> None:
        self.chunks: deque[tuple[int, np.ndarray]] = deque()
        self.end = start

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self.chunks.append((self.end, samples))
            self.end += len(samples)

    def skip(self, n: int) -> None:
        self.end += n  # lost samples: reading across them gives silence

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros(max(0, b - a), np.float32)
        for s, c in self.chunks:
            lo, hi = max(a, s), min(b, s + len(c))
            if lo < hi:
                out[lo - a : hi - a] = c[lo - s : hi - s]
        return out

    def forget_before(self, sample: int) -> None:
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= sample:
            self.chunks.popleft()


class StreamPolicy:
    """The I/O-free heart of one stream (see the module docstring)."""

    def __init__(
        self,
        builder: CaptionBuilder | None = None,
        settings: PolicySettings | None = None,
        segmenter: SegmenterSettings | None = None,
        start_sample: int = 0,
    ) -> None:
        self.settings = settings or PolicySettings()
        self.builder = builder or CaptionBuilder()
        self.segmenter_settings = segmenter or SegmenterSettings()
        self.segmenter: Segmenter | None = Segmenter(self.segmenter_settings, start_sample=start_sample)
        self.stats = PolicyStats()
        self.position = start_sample  # samples seen (fed or lost)
        self._audio = _Audio(start_sample)
        self._utts: deque[_Utterance] = deque()
        self._in_flight: Work | None = None
        self._next_partial = 0
        self._ended = False
        self._behind_reported_at = -1e9
        self._shed_reported = 0
        self._prev_upto = 0
        self.events: list[CaptionEvent] = []  # status events waiting to be collected
        self.gate_log: deque[GateVerdict] = deque(maxlen=256)  # the latest, for the gate's bench

    @property
    def backlog_s(self) -> float:
        """Seconds of ended utterances still waiting for their finals: what a source that can
        wait is held back by. (Not the open utterance: it ends only with more audio, so holding
        audio back for it could wait forever.)"""
        return sum(u.end - u.start for u in self._utts if u.end is not None) / SAMPLE_RATE

    # ------------------------------------------------------------------ audio in

    def feed(self, samples: np.ndarray) -> None:
        """Audio that follows what came before (16 kHz mono float32)."""
        samples = np.asarray(samples, np.float32)
        if self.segmenter is None:  # paused: the audio is not listened to
            self._audio.skip(len(samples))
            self.position += len(samples)
            return
        self._audio.append(samples)
        self.position += len(samples)
        self._records(self.segmenter.feed(samples))
        self._forget()

    def gap(self, missing: int) -> None:
        """``missing`` samples were lost before the current position: the open utterance ends."""
        self._audio.skip(missing)
        self.position += missing
        if self.segmenter is not None:
            self._records(self.segmenter.gap(self.position, missing))

    def pause(self) -> None:
        """Stop listening: the open utterance ends now (its final follows)."""
        if self.segmenter is not None:
            self._records(self.segmenter.flush())
            self.segmenter = None

    def cut(self) -> None:
        """End the open utterance now (its final follows); keep listening (push-to-talk)."""
        if self.segmenter is not None:
            self._records(self.segmenter.flush())

    def resume(self) -> None:
        if self.segmenter is None and not self._ended:
            self.segmenter = Segmenter(self.segmenter_settings, start_sample=self.position)

    def end(self) -> None:
        """The input ended: the open utterance's final is queued; nothing more comes."""
        self.pause()
        self._ended = True

    @property
    def done(self) -> bool:
        """Ended, every final delivered."""
        return self._ended and not self._utts and self._in_flight is None

    @property
    def in_speech(self) -> bool:
        return bool(self._utts and self._utts[-1].end is None)

    def _records(self, records: list[SpeechStart | SpeechEnd]) -> None:
        for r in records:
            if isinstance(r, SpeechStart):
                self._utts.append(_Utterance(r.utterance, r.sample))
                self._next_partial = min(self.position, r.sample + self._interval)
            elif self._utts and self._utts[-1].end is None:
                self._utts[-1].end, self._utts[-1].sure = r.sample, r.sure

    def _forget(self) -> None:
        keep = self.position - int(self.settings.keep_s * SAMPLE_RATE)
        if self._utts:
            keep = min(keep, self._utts[0].start)
        self._audio.forget_before(keep)

    @property
    def _interval(self) -> int:
        return int(self.settings.interval_s * SAMPLE_RATE)

    # ------------------------------------------------------------------ work out

    def pending(self) -> bool:
        """Whether ``take`` would give work now (cheap: for the scheduler's wake-up test)."""
        if self._in_flight is not None or not self._utts:
            return False
        u = self._utts[0]
        if u.end is not None:
            return True
        return self._partial_due(u)

    def _partial_due(self, u: _Utterance) -> bool:
        if not self.settings.partials or self.position < self._next_partial:
            return False
        return self.stats.last_step_s <= self.settings.max_lag_s or u.fed < 0

    def take(self, now: float) -> Work | None:
        """The step this stream wants now, or None; the caller must ``complete`` or ``requeue`` it."""
        if not self.pending():
            return None
        u = self._utts[0]
        kind: WorkKind = "final" if u.end is not None else "partial"
        upto = u.end if u.end is not None else self.position
        if kind == "partial" and self._interval:
            late = (upto - self._next_partial) // self._interval
            self.stats.shed_partials += max(0, late)
        restart = u.fed < 0
        fed = u.start if restart else u.fed
        due = max(self._next_partial, u.start) / SAMPLE_RATE if kind == "partial" else upto / SAMPLE_RATE
        work = Work(kind, u.utterance, u.start, upto, self._audio.read(fed, upto), restart, due)
        self._in_flight = work
        return work

    def retry(self, work: Work) -> Work:
        """``work`` again from its utterance's start (the decoder's state is not to be trusted)."""
        u = self._utts[0]
        u.fed = -1
        return Work(
            work.kind, u.utterance, u.start, work.upto, self._audio.read(u.start, work.upto), True, work.due
        )

    def requeue(self, work: Work) -> None:
        """``work`` was not run (the round was full): it will be taken again, with newer audio."""
        if work is self._in_flight:
            self._in_flight = None

    def complete(self, work: Work, hyp: Hypothesis, step_s: float, now: float) -> list[CaptionEvent]:
        """The result of ``work``; the caption events it makes (status events first)."""
        self._in_flight = None
        u = self._utts[0]
        u.fed = work.upto
        self._count_shed(work, now)
        self._account(work, step_s, now)
        events = self.collect()
        lag = self.stats.lag_s
        gated = self._gated(work, u, hyp)
        hidden = gated is not hyp and work.kind != "final"  # a hidden partial: nothing goes out
        hyp = u.last = gated  # a failed final falls back to what was shown, never to hidden text
        text = join_text(hyp.committed, hyp.tentative).strip()
        # A final with no text after no shown partial (the model heard no words: music, a
        # cough) is no caption; the utterance is still completed and its audio freed.
        if not hidden and (text or u.shown or work.kind != "final"):
            events.append(self.builder.caption(work.utterance, work.start, hyp, now, lag=lag))
            u.shown = u.shown or bool(text)
        if work.kind == "final":
            self._utts.popleft()
            self._forget()
        else:
            self._next_partial = max(work.upto + self._interval, int(now * SAMPLE_RATE))
        return events

    def _gated(self, work: Work, u: _Utterance, hyp: Hypothesis) -> Hypothesis:
        """``hyp``, or no text where the caption gate hides it (a final after a shown partial
        still goes out, empty, so the partial is withdrawn)."""
        sure = u.sure if u.end is not None else (self.segmenter.open_sure if self.segmenter else None)
        hyp, hid = apply(hyp, sure, self.settings.gate, work.kind, work.start)
        if hid is not None:
            self.gate_log.append(hid)
            self.stats.gated_finals += work.kind == "final"
            self.stats.gated_partials += work.kind != "final"
        return hyp

    def _count_shed(self, work: Work, now: float) -> None:
        """Partials the configured interval asked for while this step ran (the interval adapts:
        the next one is taken at once, the ones in between are shed)."""
        if work.kind == "partial" and self._interval:
            passed = int(now * SAMPLE_RATE) - (work.upto + self._interval)
            self.stats.shed_partials += max(0, passed // self._interval)

    def failed(self, work: Work, now: float, give_up: bool) -> list[CaptionEvent]:
        """``work`` raised. The utterance is replayed from its start next time; a final that
        cannot be computed becomes the last partial's text, so no final is lost."""
        self._in_flight = None
        u = self._utts[0]
        u.fed = -1
        if not (give_up and work.kind == "final"):
            return []
        hyp = fallback_final(u.last, work.upto - work.start)
        self._utts.popleft()
        return [self.builder.caption(work.utterance, work.start, hyp, now, lag=self.stats.lag_s)]

    def collect(self) -> list[CaptionEvent]:
        """Status events raised since the last call."""
        out, self.events = self.events, []
        return out

    def status(self, code: str, message: str, now: float) -> CaptionEvent:
        return self.builder.status(code, message, now, lag=self.stats.lag_s)

    def _account(self, work: Work, step_s: float, now: float) -> None:
        st = self.stats
        st.steps += 1
        st.last_step_s = step_s
        new_audio_s = max(0.05, (work.upto - max(self._prev_upto, work.start)) / SAMPLE_RATE)
        self._prev_upto = work.upto
        st.rtf = 0.7 * st.rtf + 0.3 * (step_s / new_audio_s)
        st.lag_s = max(0.0, now - work.upto / SAMPLE_RATE)
        st.max_lag_s = max(st.max_lag_s, st.lag_s)
        behind = step_s > self.settings.max_lag_s or st.lag_s > self.settings.max_lag_s
        shed = st.shed_partials - self._shed_reported
        if (
            self.settings.live
            and (behind or shed)
            and now - self._behind_reported_at >= self.settings.behind_report_s
        ):
            self.events.append(
                self.status(
                    "behind",
                    f"model slower than real time: {shed} partial steps shed (lag {st.lag_s:.1f}s); "
                    "finals are never skipped",
                    now,
                )
            )
            self._shed_reported, self._behind_reported_at = st.shed_partials, now
