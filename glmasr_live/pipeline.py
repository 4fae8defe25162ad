"""The live pipeline: wires the stages and owns the threads.

    source thread(s) ──► RingBuffer ──► reader thread ──► StreamPolicy ──► scheduler thread
                         (feeds the policy, which runs the segmenter)      (owns the model)
                                                                                  │
                        sinks (websocket, transcripts, TUI, stdout, API) ◄── CaptionHub (asyncio)

Python API::

    from glmasr_live.config import PipelineSettings
    from glmasr_live.pipeline import LivePipeline

    with LivePipeline(PipelineSettings(input="talk.wav", model="demo", ws=None)) as live:
        for event in live.events():          # until the input ends
            if event.type == "final":
                print(event.text)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.audio.segmenter import SegmenterSettings
from glmasr_live.captions.hub import CaptionHub, EventQueue, FinalsWriterThread
from glmasr_live.captions.transcripts import TranscriptError
from glmasr_live.config import PipelineSettings
from glmasr_live.errors import AudioInputError, ConfigError, GlmAsrLiveError
from glmasr_live.events import SAMPLE_RATE, CaptionEvent, PipelineStats, SessionInfo
from glmasr_live.policy import CaptionBuilder, PolicySettings, StreamPolicy
from glmasr_live.session import Listener

log = logging.getLogger(__name__)

FRAME = SAMPLE_RATE * 30 // 1000
STATS_EVERY = SAMPLE_RATE // 5  # a stats snapshot per 200 ms of audio
MAX_BACKLOG_S = 30.0
"""Ended utterances waiting for their finals before a source that can wait is held back."""


def build_source(s: PipelineSettings) -> Any:
    """The audio source the settings ask for (validated now: bad input fails before the model loads)."""
    from glmasr_live.audio.sources import FileSource, StdinSource

    if s.input == "-":
        return StdinSource(fmt=s.stdin_format, rate=s.stdin_rate, channels=s.stdin_channels)
    if s.input:
        src = FileSource(s.input, realtime=s.realtime)
        src._prepare()  # reads the file now: one clear line for a missing, empty or broken one
        return src
    from glmasr_live.audio.capture import MicrophoneSource
    from glmasr_live.audio.capture_types import CaptureSettings
    from glmasr_live.audio.devices import find_input_device

    device = s.input_device
    spec: str | int | None = int(device) if device and device.isdigit() else device
    dev = find_input_device(spec)  # DeviceError with the list of devices
    return MicrophoneSource(CaptureSettings(device=dev.index))


class LivePipeline:
    """A running live session (implements ``glmasr_live.session.LiveSession``)."""

    def __init__(self, settings: PipelineSettings, *, engine: Any = None, source: Any = None) -> None:
        self.settings = settings
        self._engine = engine
        self._source = source
        self.hub = CaptionHub()
        self.ring = RingBuffer.for_seconds(settings.ring_seconds)
        self.server: Any = None
        self.writer: FinalsWriterThread | None = None
        self.scheduler: Any = None
        self.stream: Any = None  # this session's stream on the scheduler
        self.finals: list[CaptionEvent] = []
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._progress = threading.Event()  # the stream emitted: the reader may take more
        self.lost_samples = 0  # overwritten in the ring before they were read
        self._writer_error: BaseException | None = None
        self._seg_thread = threading.Thread(target=self._segment_loop, name="segmenter", daemon=True)
        self._last_latency = 0.0
        self._info = SessionInfo(model=settings.model)
        self._started = False
        self._queues: list[EventQueue] = []
        self.hub.add_sink(self._keep_final)

    # ------------------------------------------------------------------ LiveSession

    @property
    def info(self) -> SessionInfo:
        return self._info

    def subscribe(self, listener: Listener) -> None:
        self.hub.add_sink(listener)

    def events(self) -> Iterator[CaptionEvent]:
        """Caption events until the session ends. Call before ``start`` to miss none."""
        q = EventQueue()
        self._queues.append(q)
        self.hub.add_sink(q)
        if self._done.is_set():
            q.close()
        return iter(q)

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()
        self.ring.wake()

    def save_transcript(self, path: Path) -> Path:
        from glmasr_live.captions.transcripts import write_transcript

        self.hub.drain()
        return write_transcript(list(self.finals), path)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open outputs, check the input, load the model, start every thread.

        Raises a ``GlmAsrLiveError`` (one line for the user) for bad settings or input.
        """
        from glmasr_live.captions.transcripts import TranscriptWriter

        s = self.settings
        if s.encoder_padding not in ("full", "none"):
            raise ConfigError(f"encoder padding {s.encoder_padding!r}: use full or none")
        hostport = s.ws_host_port()
        writer = TranscriptWriter(s.transcripts) if s.transcripts else None
        # A continued transcript goes on where it ended: numbering, time line, utterance ids.
        builder = (
            CaptionBuilder(
                writer.next_seq, clock_offset=writer.resume_clock, utterance_offset=writer.next_utterance
            )
            if writer is not None
            else CaptionBuilder()
        )
        if self._source is None:
            log.info("opening input %s", s.input or s.input_device or "(default microphone)")
            self._source = build_source(s)
        # torch and transformers load only now: bad settings, outputs or input fail in well under
        # a second instead of after the seconds these imports take
        from glmasr_live.asr.engine import AsrEngine, EngineSettings
        from glmasr_live.asr.scheduler import Scheduler, WallAudioClock
        from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

        engine_settings = EngineSettings(model=s.model, device=s.device, dtype=s.dtype, prompt=s.prompt)
        if self._engine is None:
            log.info("loading model %s", s.model)
            self._engine = AsrEngine(engine_settings)
            log.info("model ready: %s", self._engine.describe())
        engine = self._engine
        streaming = StreamingSettings(
            agreement=s.agreement,
            encoder_padding=s.encoder_padding,  # type: ignore[arg-type]
            context_s=s.context_s,
        )

        def make_decoder() -> Any:
            return StreamingDecoder(engine, streaming, instruction=s.prompt)

        self.hub.start()
        if hostport is not None:
            log.info("starting caption server on %s:%d", *hostport)
            self._start_server(*hostport)
        if writer is not None:
            self.writer = FinalsWriterThread(writer, on_error=self._transcript_failed)
            self.hub.add_sink(self.writer)
        self.scheduler = Scheduler(make_decoder)
        lossless = bool(getattr(self._source, "lossless", False))
        policy = StreamPolicy(
            builder,
            PolicySettings(interval_s=s.interval_s, max_lag_s=s.max_lag_s, live=not lossless),
            SegmenterSettings.from_sensitivity(
                s.vad_sensitivity, s.endpoint_s, s.vad_model, s.caption_gate == "on"
            ),
        )
        ring = self.ring
        # A live source's clock is the audio captured; a source that waits for us (a file, a
        # pipe) has no clock of its own: its time is the audio the stream has taken, so a
        # file read as fast as it goes is never "behind".
        clock = WallAudioClock(lambda: policy.position / SAMPLE_RATE if lossless else ring.audio_clock)
        self.stream = self.scheduler.open(policy, clock, self._emit_all)
        self.stream.decoder = make_decoder()
        self._info = SessionInfo(
            input_name=self._source.name,
            input_rate=int(self._source.native_rate),
            model=s.model,
            device=engine.device.type,
            dtype=str(engine.dtype).replace("torch.", ""),
            ws_url=self.server.url if self.server else None,
            overlay_url=self.server.overlay_url if self.server else None,
            transcripts=tuple(s.transcripts),
        )
        self.scheduler.start()
        if getattr(self._source, "lossless", False):
            self.ring.advance_reader(0)  # before the first write: the source waits for us
        self._seg_thread.start()
        self._source.start(self.ring)
        self._started = True

    def _start_server(self, host: str, port: int) -> None:
        from glmasr_live.captions.broadcast import BroadcastSettings, CaptionServer

        self.server = CaptionServer(BroadcastSettings(host=host, port=port, token=self.settings.ws_token))
        self.hub.run(self.server.start(), timeout=15)
        server = self.server

        def to_websocket(item: CaptionEvent | PipelineStats) -> None:
            if isinstance(item, CaptionEvent):
                server.publish(item)

        self.hub.add_sink(to_websocket)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the input has ended and every final is out; True when done."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capture, finish the current utterance (its final goes out), flush, close."""
        if not self._started:
            self.hub.stop()
            return
        t0 = time.monotonic()
        self._stopping.set()
        self._source.stop()
        self.ring.close()
        self._done.wait(timeout)
        log.debug("stop: last final out after %.2fs", time.monotonic() - t0)
        self._shutdown()
        log.debug("stop: closed after %.2fs", time.monotonic() - t0)
        if self.ring.nonfinite_samples:
            log.warning("%d NaN or infinite input samples were replaced", self.ring.nonfinite_samples)
        problem = self.failure()
        if problem is not None:
            raise problem  # the front ends show it as one line and exit non-zero

    def failure(self) -> GlmAsrLiveError | None:
        """What went wrong in a session that ran to its end: a broken input, a transcript that
        could not be written, audio lost before it was read. None when nothing was lost."""
        src = self._source.error if self._source is not None else None
        if src is not None:
            return src
        if self._writer_error is not None:
            return TranscriptError(f"the transcript is incomplete: {self._writer_error}")
        lost = max(self.lost_samples, self.ring.dropped_samples) / SAMPLE_RATE
        if lost > 0:
            return AudioInputError(
                f"{lost:.1f} s of audio were lost (the input overran the buffer); the captions have gaps there"
            )
        return None

    def _shutdown(self) -> None:
        if self.server is not None:
            try:
                self.hub.run(self.server.close(), timeout=5)
            except Exception:  # noqa: BLE001
                log.exception("closing the caption server failed")
            self.server = None
        if self.writer is not None:
            self.hub.drain()
            self.writer.close()
            self.writer = None
        for q in self._queues:
            q.close()
        self.hub.stop()

    def __enter__(self) -> LivePipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ threads

    def _emit_all(self, events: list[CaptionEvent]) -> None:
        self._progress.set()
        for event in events:
            if event.type != "status":
                self._last_latency = max(0.0, event.audio_clock - event.end)
            self.hub.publish(event)

    def _transcript_failed(self, error: BaseException) -> None:
        """The transcript writer's thread: say so at once (status event), and at the end."""
        self._writer_error = error
        with self.stream.lock:  # the policy numbers events: never at once with the scheduler
            status = self.stream.policy.status(
                "transcript_error", f"transcript not written: {error}", self.stream.clock.now()
            )
        self.hub.publish(status)

    def _keep_final(self, item: CaptionEvent | PipelineStats) -> None:
        if isinstance(item, CaptionEvent) and item.type == "final":
            self.finals.append(item)

    def _segment_loop(self) -> None:
        try:
            self._read_until_end()
        except Exception:  # noqa: BLE001
            log.exception("segmenter thread failed")
        finally:
            self.stream.end()
            self.stream.finished.wait()
            self.scheduler.stop()
            self.hub.drain()
            self._done.set()
            for q in self._queues:
                self.hub.loop.call_soon_threadsafe(q.close)

    def _read_until_end(self) -> None:
        """Move audio from the ring into the stream (its policy keeps what it needs, so the
        ring's space is freed right behind this reader). From a source that can wait, no more
        is taken while more than ``MAX_BACKLOG_S`` of ended utterances wait for their finals
        (back-pressure all the way to the file or pipe); a source that cannot wait may have
        overwritten audio before it was read: that is marked as a gap and counted."""
        ring, stream = self.ring, self.stream
        lossless = bool(getattr(self._source, "lossless", False))
        pos, next_stats, paused = 0, 0, False
        while True:
            if lossless and stream.policy.backlog_s > MAX_BACKLOG_S and not ring.closed:
                self._progress.wait(0.25)  # set when the stream emits (a step came back)
                self._progress.clear()
                continue
            ring.wait_for(pos + FRAME, timeout=0.25)
            end = ring.write_index
            if lossless:  # a second at a time, so the backlog check above stays fine-grained
                end = min(end, pos + SAMPLE_RATE)
            if self.paused != paused:
                paused = self.paused
                stream.set_paused(paused)
            pos = self._skip_overwritten(pos)
            for g in ring.gaps_since(pos):
                if g.sample > end:
                    break
                gap_start = g.sample - g.missing
                if gap_start > pos:
                    stream.feed(ring.read(pos, gap_start))
                stream.gap(g.missing)
                pos = g.sample
            if end > pos:
                stream.feed(ring.read(pos, end))
                pos = end
            ring.advance_reader(pos)
            if pos >= next_stats:
                next_stats = pos + STATS_EVERY
                self.hub.publish(self._stats())
            if ring.closed and pos >= ring.write_index:
                return

    def _skip_overwritten(self, pos: int) -> int:
        """Audio overwritten before it was read is lost: a gap for the stream, counted."""
        oldest = self.ring.oldest_index
        if pos >= oldest:
            return pos
        self.lost_samples += oldest - pos
        log.warning("%.1f s of audio were overwritten before they were read", (oldest - pos) / SAMPLE_RATE)
        self.stream.gap(oldest - pos)
        return oldest

    def _stats(self) -> PipelineStats:
        policy = self.stream.policy
        seg, st = policy.segmenter, policy.stats
        src = self._source.stats if self._source is not None else None
        return PipelineStats(
            audio_clock=self.ring.audio_clock,
            level_dbfs=seg.level_dbfs if seg else -120.0,
            speech=bool(seg and seg.in_speech),
            gain_db=seg.gain_db if seg else 0.0,
            step_ms=st.last_step_s * 1000,
            rtf=st.rtf,
            latency_s=self._last_latency,
            dropped_samples=max(self.ring.dropped_samples, src.dropped_samples if src else 0),
            skipped_partials=st.shed_partials,
            subscribers=self.server.subscriber_count if self.server else 0,
            paused=self.paused,
        )
