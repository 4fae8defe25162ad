"""Many live streams on one model, from Python: ``Captioner`` and its ``LiveStream``s.

::

    from glmasr_live.streams import Captioner

    with Captioner(model="demo") as cap:            # loads the model, starts the scheduler
        alice = cap.open_stream("alice")            # any number of streams share the model
        bob = cap.open_stream("bob", sample_rate=48000, channels=2)
        alice.feed(samples)                         # float32 PCM as it arrives (any size)
        ...
        alice.end()                                 # the open utterance's final follows
        for event in alice.events():                # CaptionEvents until the stream is done
            print(event.type, event.text)

Each stream has its own policy (segmenter, utterances, pacing), its own decoder caches and its
own clock (the audio it has been fed); the scheduler thread batches all of their steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from glmasr_live.audio.segmenter import SegmenterSettings
from glmasr_live.events import SAMPLE_RATE, CaptionEvent
from glmasr_live.policy import CaptionBuilder, PolicySettings, StreamPolicy


class _FedClock:
    """A pushed stream's clock: the audio it has been fed (the sender paces it)."""

    def __init__(self) -> None:
        self.samples = 0

    def now(self) -> float:
        return self.samples / SAMPLE_RATE

    def spent(self, seconds: float) -> None:
        pass


class LiveStream:
    """One stream of a ``Captioner``: ``feed``, ``end``, then ``events`` or ``wait``."""

    def __init__(self, captioner: Captioner, name: str, sample_rate: int, channels: int,
                 on_event: Callable[[CaptionEvent], None] | None,
                 on_finished: Callable[[], None] | None = None) -> None:  # fmt: skip
        from glmasr_live.audio.resampler import StreamResampler
        from glmasr_live.errors import ConfigError

        if not (isinstance(sample_rate, int) and 1000 <= sample_rate <= 768_000):
            raise ConfigError(
                f"stream {name!r}: sample_rate {sample_rate!r} is not a rate from 1000 to 768000 Hz"
            )
        if not (isinstance(channels, int) and 1 <= channels <= 64):
            raise ConfigError(f"stream {name!r}: channels {channels!r} is not 1 to 64")
        self.name = name
        self._on_event = on_event
        self._on_finished = on_finished
        self._resampler = (
            StreamResampler(sample_rate, channels) if (sample_rate, channels) != (SAMPLE_RATE, 1) else None
        )
        self._channels = channels
        self._clock = _FedClock()
        self._queue: list[CaptionEvent] = []
        self._cond = threading.Condition()
        policy = StreamPolicy(CaptionBuilder(), captioner.policy_settings, captioner.segmenter_settings)
        self._handle = captioner.scheduler.open(policy, self._clock, self._deliver, name)

    def feed(self, samples: np.ndarray) -> None:
        """PCM at the stream's rate: float32 in [-1, 1], shape (n,) or (n, channels)."""
        x = np.asarray(samples, np.float32)
        if x.ndim > 2 or x.size % self._channels:
            raise ValueError(
                f"stream {self.name!r}: expected (n,) or (n, {self._channels}) samples, got {x.shape}"
            )
        if self._resampler is not None:
            x = self._resampler.process(x.reshape(-1, self._channels))
        x = np.nan_to_num(x.reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        self._clock.samples += len(x)
        self._handle.feed(x)

    def cut(self) -> None:
        """End the open utterance now (its final follows); the stream goes on. (A resampled
        stream's last few milliseconds before the cut stay in the resampler for the next one.)"""
        self._handle.cut()

    def end(self) -> None:
        """No more audio; the open utterance's final is still computed and delivered."""
        if self._resampler is not None:
            rest = self._resampler.flush()
            if len(rest):
                self._clock.samples += len(rest)
                self._handle.feed(rest.reshape(-1))
        self._handle.end()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every final of the ended stream is out; True when done."""
        return self._handle.finished.wait(timeout)

    def events(self) -> Iterator[CaptionEvent]:
        """Events as they come, until the stream has ended and its last final is out."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._handle.finished.is_set())
                batch, self._queue = self._queue, []
            yield from batch
            if not batch and self._handle.finished.is_set():
                return

    @property
    def audio_seconds(self) -> float:
        """Seconds of (16 kHz) audio fed so far: the stream's clock."""
        return self._clock.now()

    @property
    def stats(self) -> Any:
        return self._handle.policy.stats

    def _deliver(self, events: list[CaptionEvent]) -> None:
        if self._on_event is not None:
            for e in events:
                self._on_event(e)
        with self._cond:
            self._queue.extend(events)
            self._cond.notify_all()

    def _finished(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self._on_finished is not None:
            self._on_finished()


class Captioner:
    """One model, one scheduler thread, any number of ``LiveStream``s."""

    def __init__(self, model: str = "demo", device: str = "auto", dtype: str = "auto", *,
                 engine: Any = None, streaming: Any = None, policy: PolicySettings | None = None,
                 segmenter: SegmenterSettings | None = None, scheduler: Any = None) -> None:  # fmt: skip
        from glmasr_live.asr.engine import AsrEngine, EngineSettings
        from glmasr_live.asr.scheduler import Scheduler
        from glmasr_live.asr.streaming import StreamingDecoder

        self.engine = engine or AsrEngine(EngineSettings(model=model, device=device, dtype=dtype))
        self.policy_settings = policy or PolicySettings()
        self.segmenter_settings = segmenter or SegmenterSettings()
        eng = self.engine
        self.scheduler = Scheduler(lambda: StreamingDecoder(eng, streaming), scheduler)
        self._streams: list[LiveStream] = []
        self._lock = threading.Lock()
        self._opened = 0  # open_stream (any thread) vs the scheduler's on_finished
        self.scheduler.on_finished = self._notify_finished
        self.scheduler.start()

    def open_stream(self, name: str = "", sample_rate: int = SAMPLE_RATE, channels: int = 1,
                    on_event: Callable[[CaptionEvent], None] | None = None,
                    on_finished: Callable[[], None] | None = None) -> LiveStream:  # fmt: skip
        """A new stream. ``on_event`` gets each event and ``on_finished`` is called once its
        last final is out (both on the scheduler thread: hand them on, never block there)."""
        with self._lock:
            self._opened += 1
            s = LiveStream(
                self, name or f"stream{self._opened}", sample_rate, channels, on_event, on_finished
            )
            self._streams.append(s)
        return s

    def submit(self, job: Callable[[], Any]) -> Any:
        """Run ``job()`` on the model's thread when no live stream has work due (a background
        job such as one piece of a file transcription; keep each short). A concurrent future."""
        return self.scheduler.submit(job)

    def _notify_finished(self, handle: Any) -> None:
        with self._lock:
            done = [s for s in self._streams if s._handle is handle]
            self._streams = [s for s in self._streams if s._handle is not handle]
        for s in done:
            s._finished()

    def close(self) -> None:
        """End every stream (their finals are delivered), then stop the scheduler."""
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            s.end()
        for s in streams:
            s.wait(30)
        self.scheduler.stop(10)

    def __enter__(self) -> Captioner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
