"""The scheduler: one thread owns the model and runs the decode steps of many streams in rounds.

Each round takes the due work of every stream (a stream's ``StreamPolicy`` says what it wants),
finals first, then partials of the streams that have waited longest, up to ``max_rows`` rows
and a token budget; the rest waits for the next round (a waiting partial is taken again with
newer audio, never queued stale). The round runs as one batch (``decode_round``: the open
blocks through the encoder together, one batched LM pass over every stream's own cached
prefix). Each stream keeps its own decoder (its caches); a stream that ends gives them back at
once. Single-stream live captioning and file replay (``transcribe --mode streaming``, ``eval``)
are this scheduler with one stream (replay drives ``run_round`` without a thread on a
simulated clock); ``bench-streams`` and the Python API run it with many.

Background jobs (``submit``: the server's file transcriptions, one piece at a time) run on the
same thread only when a round finds no live work, so they never delay a live stream; a job
should be short (one piece of audio), since a live step that comes due waits for it.

A round that raises is rerun one stream at a time, so one stream's fault does not cost the
others their step; a stream whose step fails twice gets a status event, its utterance is
replayed from its start next time, and a final that cannot be computed becomes the last
partial's text (no final is lost). Repeated faults rebuild that stream's decoder.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from glmasr_live.events import CaptionEvent, Work

log = logging.getLogger(__name__)

Emit = Callable[[list[CaptionEvent]], None]


class StreamClock(Protocol):
    """A stream's audio clock: seconds of its audio that have arrived."""

    def now(self) -> float: ...

    def spent(self, seconds: float) -> None: ...


class WallAudioClock:
    """The clock of a live stream: ``now`` is read from the source (e.g. the ring buffer)."""

    def __init__(self, read: Callable[[], float]) -> None:
        self._read = read

    def now(self) -> float:
        return self._read()

    def spent(self, seconds: float) -> None:
        pass  # the audio kept arriving by itself


@dataclass(frozen=True)
class SchedulerSettings:
    """Fields:
    max_rows: streams batched into one round (1: one step at a time, the comparison policy).
    token_budget: LM tokens (prefilled + generated) a round may hold; a row always fits alone.
    finals_alone: a round with finals in it takes no partials (end of speech → final first).
    """

    max_rows: int = 64
    token_budget: int = 16384
    finals_alone: bool = True


@dataclass
class SchedulerStats:
    rounds: int = 0
    rows: int = 0
    last_round_s: float = 0.0
    compute_s: float = 0.0
    errors: int = 0
    restarts: int = 0


class StreamHandle:
    """One stream registered with a scheduler: feed it audio; its events go to ``emit``."""

    MAX_FAILURES = 3

    def __init__(self, scheduler: Scheduler, policy: Any, clock: StreamClock, emit: Emit, name: str) -> None:
        self.scheduler, self.policy, self.clock, self.emit, self.name = scheduler, policy, clock, emit, name
        self.lock = threading.Lock()
        self.decoder: Any = None
        self.failures = 0
        self.finished = threading.Event()

    def feed(self, samples: Any) -> None:
        with self.lock:
            self.policy.feed(samples)
        self.scheduler.wake()

    def gap(self, missing: int) -> None:
        with self.lock:
            self.policy.gap(missing)
        self.scheduler.wake()

    def set_paused(self, paused: bool) -> None:
        with self.lock:
            self.policy.pause() if paused else self.policy.resume()
        self.scheduler.wake()

    def cut(self) -> None:
        """End the open utterance now; the stream goes on."""
        with self.lock:
            self.policy.cut()
        self.scheduler.wake()

    def end(self) -> None:
        """No more audio: the open utterance's final is computed, then the stream is freed."""
        with self.lock:
            self.policy.end()
        self.scheduler.wake()

    def _pending(self) -> bool:
        with self.lock:
            return bool(self.policy.pending())


class Scheduler:
    """See the module docstring. ``make_decoder()`` builds one stream's decoder."""

    def __init__(self, make_decoder: Callable[[], Any], settings: SchedulerSettings | None = None) -> None:
        self.make_decoder = make_decoder
        self.settings = settings or SchedulerSettings()
        self.stats = SchedulerStats()
        self._streams: list[StreamHandle] = []
        self._jobs: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.on_finished: Callable[[StreamHandle], None] | None = None  # after a stream is freed

    # ------------------------------------------------------------------ streams

    def open(self, policy: Any, clock: StreamClock, emit: Emit, name: str = "") -> StreamHandle:
        h = StreamHandle(self, policy, clock, emit, name or f"stream{len(self._streams)}")
        with self._cond:
            self._streams.append(h)
        return h

    @property
    def streams(self) -> int:
        with self._cond:
            return len(self._streams)

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``job()`` on the scheduler thread when no live work is due; its result comes back."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cond:
            self._jobs.append((job, done))
            self._cond.notify()
        return done

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="asr-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the current round (streams not ended lose nothing already emitted);
        background jobs not yet run are cancelled."""
        with self._cond:
            self._stop = True
            jobs, self._jobs = self._jobs, []
            self._cond.notify_all()
        for _, done in jobs:
            done.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._jobs or self._any_pending(), timeout=0.5)
                if self._stop:
                    return
            try:
                if self.run_round() == 0:
                    self._run_job()
            except Exception:  # noqa: BLE001 - the thread must survive anything a round does
                log.exception("scheduler round failed")

    def _run_job(self) -> None:
        with self._cond:
            if not self._jobs:
                return
            job, done = self._jobs.pop(0)
        if not done.set_running_or_notify_cancel():
            return
        try:
            done.set_result(job())
        except BaseException as exc:  # noqa: BLE001 - the submitter gets the error
            done.set_exception(exc)

    def _any_pending(self) -> bool:
        return any(h._pending() or h.policy.done for h in self._streams)

    # ------------------------------------------------------------------ a round

    def run_round(self) -> int:
        """Take the due work of all streams, run it as one batch, emit the events; rows run."""
        rows = self._select()
        if rows:
            t0 = time.perf_counter()
            results = self._compute(rows)
            elapsed = time.perf_counter() - t0
            self.stats.rounds += 1
            self.stats.rows += len(rows)
            self.stats.last_round_s = elapsed
            self.stats.compute_s += elapsed
            for clock in {id(h.clock): h.clock for h, _ in rows}.values():
                clock.spent(elapsed)
            for (h, work), hyp in zip(rows, results, strict=True):
                self._deliver(h, work, hyp, elapsed)
        self._retire_finished()
        return len(rows)

    def _select(self) -> list[tuple[StreamHandle, Work]]:
        with self._cond:
            streams = list(self._streams)
        taken: list[tuple[StreamHandle, Work]] = []
        for h in streams:
            with h.lock:
                w = h.policy.take(h.clock.now())
            if w is not None:
                taken.append((h, w))
        taken.sort(key=lambda hw: (hw[1].kind != "final", hw[1].due))
        finals = self.settings.finals_alone and any(w.kind == "final" for _, w in taken)
        chosen: list[tuple[StreamHandle, Work]] = []
        tokens = 0
        for h, w in taken:
            cost = self._cost(h, w)
            # A round that carries finals carries no partials: a final waits for its own round
            # only, and the partials follow in the next one (with newer audio).
            behind_final = finals and w.kind == "partial"
            full = len(chosen) >= self.settings.max_rows or tokens + cost > self.settings.token_budget
            if chosen and (full or behind_final):
                with h.lock:
                    h.policy.requeue(w)
                continue
            chosen.append((h, w))
            tokens += cost
        return chosen

    def _decoder(self, h: StreamHandle) -> Any:
        if h.decoder is None:
            h.decoder = self.make_decoder()
        return h.decoder

    def _cost(self, h: StreamHandle, w: Work) -> int:
        """LM tokens the step will hold (the decoder knows its open block and forced text)."""
        return int(self._decoder(h).step_tokens(len(w.audio), w.restart))

    def _prepare(self, h: StreamHandle, w: Work) -> Any:
        d = self._decoder(h)
        if w.restart:
            d.release()
            d.start()
        d.feed(w.audio)
        return d.plan(final=w.kind == "final")

    def _compute(self, rows: list[tuple[StreamHandle, Work]]) -> list[Any]:
        from glmasr_live.asr.streaming import decode_round

        try:
            return decode_round([self._prepare(h, w) for h, w in rows])
        except Exception:  # noqa: BLE001 - find the stream at fault: rerun each alone
            if len(rows) == 1:
                return [self._alone(*rows[0], first_error=traceback.format_exc())]
            log.warning("batched round failed; rerunning its %d streams one at a time", len(rows))
            return [self._alone(h, w) for h, w in rows]

    def _alone(self, h: StreamHandle, w: Work, first_error: str | None = None) -> Any:
        """Rerun one stream's work from its utterance's start; None if it fails again."""
        from glmasr_live.asr.streaming import decode_round

        for attempt in range(2):
            if attempt or first_error is None:
                try:
                    with h.lock:
                        retry = h.policy.retry(w)
                    return decode_round([self._prepare(h, retry)])[0]
                except Exception:  # noqa: BLE001
                    first_error = traceback.format_exc()
            self._fault(h, w, first_error)
        return None

    def _fault(self, h: StreamHandle, w: Work, trace: str) -> None:
        self.stats.errors += 1
        h.failures += 1
        log.error("ASR step failed on %s work of %s utterance %d:\n%s", w.kind, h.name, w.utterance, trace)
        line = trace.strip().splitlines()[-1] if trace.strip() else "error"
        events = [h.policy.status("worker_error", line, h.clock.now())]
        _free_accelerator_memory(trace)
        if h.decoder is not None:
            h.decoder.release()
        if h.failures >= h.MAX_FAILURES:
            self.stats.restarts += 1
            h.failures = 0
            events.append(h.policy.status("worker_restart", "restarting the stream's decoder", h.clock.now()))
            h.decoder = None
        h.emit(events)

    def _deliver(self, h: StreamHandle, w: Work, hyp: Any, elapsed: float) -> None:
        with h.lock:
            if hyp is None:
                events = h.policy.failed(w, h.clock.now(), give_up=True)
            else:
                h.failures = 0
                events = h.policy.complete(w, hyp, elapsed, h.clock.now())
        if w.kind == "final" and h.decoder is not None:
            h.decoder.release()  # the utterance's caches go back at once
        if events:
            h.emit(events)

    def _retire_finished(self) -> None:
        with self._cond:
            done = [h for h in self._streams if h.policy.done]
            self._streams = [h for h in self._streams if not h.policy.done]
        for h in done:
            if h.decoder is not None:
                h.decoder.release()
                h.decoder = None
            h.finished.set()
            if self.on_finished is not None:
                self.on_finished(h)


def _free_accelerator_memory(trace: str) -> None:
    if "out of memory" not in trace.lower():
        return
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
