"""The ASR worker thread: the one thread that owns the model, fed through a job mailbox.

Jobs come from the segmenter thread. Partial jobs coalesce in a one-slot mailbox (a newer one
replaces a stale one: the model never works on audio it has already been overtaken on); final
jobs queue up and are never dropped. Finals are taken before partials so an utterance's final
is never held up behind the next utterance's partials.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.captioning import CaptionBuilder
from glmasr_live.events import SAMPLE_RATE, CaptionEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """Transcribe utterance ``utterance`` (audio from ``start``) up to absolute sample ``upto``."""

    kind: Literal["partial", "final"]
    utterance: int
    start: int
    upto: int


class JobMailbox:
    """One slot for partials (overflow policy: latest wins), a FIFO for finals (never dropped).

    The finals FIFO is unbounded on purpose: a final is a few integers, at most one per
    utterance, and dropping one would lose text.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._partial: Job | None = None
        self._finals: deque[Job] = deque()
        self._closed = False
        self.replaced = 0  # partial jobs overtaken before the worker got to them

    def put_partial(self, job: Job) -> None:
        with self._cond:
            if self._partial is not None:
                self.replaced += 1
            self._partial = job
            self._cond.notify()

    def put_final(self, job: Job) -> None:
        with self._cond:
            if self._partial is not None and self._partial.utterance == job.utterance:
                self._partial = None  # the final covers it
            self._finals.append(job)
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Job | None:
        """The next job (finals first), or None when closed and empty or on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._finals or self._partial or self._closed, timeout)
            if self._finals:
                return self._finals.popleft()
            job, self._partial = self._partial, None
            return job

    def close(self) -> None:
        """No more jobs: the worker finishes what is queued, then stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._finals and self._partial is None


@dataclass
class WorkerStats:
    steps: int = 0
    last_step_ms: float = 0.0
    rtf: float = 0.0
    skipped_partials: int = 0
    errors: int = 0
    restarts: int = 0


class AsrWorker:
    """Runs jobs from a ``JobMailbox`` through a streaming decoder; emits caption events.

    ``make_decoder`` builds a decoder (and is called again to restart after repeated faults);
    ``emit`` receives every event (called on the worker thread); ``audio_clock`` tells how
    much stream audio has arrived (seconds), to stamp events and to notice falling behind.
    """

    MAX_FAILURES = 3  # consecutive failures before the decoder (and model) is rebuilt

    def __init__(
        self,
        make_decoder: Callable[[], Any],
        ring: RingBuffer,
        mailbox: JobMailbox,
        emit: Callable[[CaptionEvent], None],
        builder: CaptionBuilder,
        audio_clock: Callable[[], float],
        max_lag_s: float = 3.0,
    ) -> None:
        self.make_decoder = make_decoder
        self.decoder = make_decoder()
        self.ring = ring
        self.mailbox = mailbox
        self.emit = emit
        self.builder = builder
        self.audio_clock = audio_clock
        self.max_lag_s = max_lag_s
        self.stats = WorkerStats()
        self.low_water = 0  # absolute sample below which the worker needs no audio
        self._utt: int | None = None
        self._fed = 0
        self._last: Any = None  # the utterance's latest hypothesis (a fallback final)
        self._failures = 0
        self._prev_upto = 0
        self._skipped_reported = 0
        self._behind_reported_at = -1e9
        self._thread = threading.Thread(target=self._run, name="asr-worker", daemon=True)
        self.done = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                job = self.mailbox.take()
                if job is None:
                    break
                self._handle(job)
        finally:
            self.done.set()

    BEHIND_REPORT_EVERY_S = 10.0  # audio seconds between two "behind" status events

    def _handle(self, job: Job) -> None:
        now = self.audio_clock()
        lag = now - job.upto / SAMPLE_RATE
        stale = job.kind == "partial" and lag > self.max_lag_s
        if stale:
            # Even the newest partial is too old (finals queued ahead of it): skip it.
            self.stats.skipped_partials += 1
        # Partials overtaken in the mailbox were skipped too: the model is slower than the
        # partial interval. Latency stays bounded (the worker always takes the newest job).
        skipped = self.stats.skipped_partials + self.mailbox.replaced
        if skipped > self._skipped_reported and now - self._behind_reported_at >= self.BEHIND_REPORT_EVERY_S:
            self.emit(
                self.builder.status(
                    "behind",
                    f"model slower than real time: {skipped - self._skipped_reported} partial steps skipped "
                    f"(lag {max(lag, 0):.1f}s); finals are never skipped",
                    now,
                )
            )
            self._skipped_reported, self._behind_reported_at = skipped, now
        if stale:
            return
        for attempt in range(2):
            try:
                self._run_job(job)
                self._failures = 0
                return
            except Exception as e:  # noqa: BLE001 - any model fault becomes a status event
                self._fault(job, e, retry=attempt == 0)
        if job.kind == "final":
            self._fallback_final(job)

    def _run_job(self, job: Job) -> None:
        dec = self.decoder
        if job.utterance != self._utt or not dec.active:
            if job.utterance != self._utt:
                self._last = None
            dec.start()
            self._utt, self._fed = job.utterance, job.start
            self._prev_upto = max(self._prev_upto, job.start)
        if job.upto > self._fed:
            dec.feed(self.ring.read(self._fed, job.upto))
            self._fed = job.upto
        hyp = dec.finish() if job.kind == "final" else dec.step()
        self.stats.steps += 1
        self.stats.last_step_ms = hyp.step_seconds * 1000
        # Real-time factor: model time per second of new audio (below 1 keeps up).
        new_audio_s = max(0.05, (job.upto - self._prev_upto) / SAMPLE_RATE)
        self._prev_upto = job.upto
        self.stats.rtf = 0.7 * self.stats.rtf + 0.3 * (hyp.step_seconds / new_audio_s)
        self._last = hyp
        self.emit(self.builder.caption(job.utterance, job.start, hyp, self.audio_clock()))
        if job.kind == "final":
            self._utt = None
            self.low_water = job.upto

    def _fault(self, job: Job, e: Exception, retry: bool) -> None:
        self.stats.errors += 1
        self._failures += 1
        log.error(
            "ASR worker failed on %s job of utterance %d:\n%s",
            job.kind,
            job.utterance,
            traceback.format_exc(),
        )
        self.emit(self.builder.status("worker_error", f"{type(e).__name__}: {e}", self.audio_clock()))
        _free_accelerator_memory(e)
        # The decoder's caches may be half-updated: restart the utterance from its audio.
        self.decoder.active = False
        self._fed = job.start
        self._utt = job.utterance
        if self._failures >= self.MAX_FAILURES:
            self.stats.restarts += 1
            self._failures = 0
            self.emit(self.builder.status("worker_restart", "restarting the ASR worker", self.audio_clock()))
            self.decoder = self.make_decoder()

    def _fallback_final(self, job: Job) -> None:
        """The final step failed twice: emit what the last partial had, so no final is lost."""
        from glmasr_live.asr.streaming import Hypothesis

        last = self._last
        text = "" if last is None else " ".join(t for t in (last.committed, last.tentative) if t)
        hyp = Hypothesis(text, "", job.upto - job.start, True, 0.0)
        self.emit(self.builder.caption(job.utterance, job.start, hyp, self.audio_clock()))
        self.decoder.active = False
        self._utt = None


def _free_accelerator_memory(e: Exception) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        torch.cuda.empty_cache()
