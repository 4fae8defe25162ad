"""Segmented offline transcription of many recordings of any length, batched.

::

    results = transcribe_recordings(
        [f.blocks() for f in files], batch_model, engine.max_new_tokens, engine.window_samples,
        batch_size=8,
    )
    for transcript in results:  # one FileTranscript per recording, in order
        ...

Each recording is fed in blocks through a ``PieceCutter`` (the segmenter's utterances, long
speech split at pauses into pieces no longer than the model's window), so no recording is ever
held whole. Pieces from all recordings gather in a pool of ``POOL_BATCHES`` batches; a full
pool is sorted by length (least padding in each batch) and run batch by batch, each piece with
its own token cap. Memory is bounded by the pool: ``batch_size * POOL_BATCHES`` windows of
audio, plus each recording's text.

No torch and no I/O here: the batched model call comes in as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from glmasr_live.audio.segmenter import SegmenterSettings
from glmasr_live.events import SAMPLE_RATE
from glmasr_live.pieces import Clip, FileTranscript, Heard, PieceCutter, Segment, assemble, segment

BatchModel = Callable[[list[np.ndarray], list[int]], Sequence[Heard]]
"""``model(clips, caps)``: a batch of pieces and each one's token cap → their transcripts."""

POOL_BATCHES = 4
"""Pieces gathered before a run, in batches: more sorts better and holds more audio."""


@dataclass(frozen=True)
class Progress:
    """Where a run stands: recordings finished, seconds of audio transcribed so far."""

    files_done: int
    audio_done_s: float


@dataclass
class _Recording:
    index: int
    read: int = 0  # samples read
    finished: bool = False  # all blocks read and the cutter flushed
    pending: int = 0  # pieces cut but not yet transcribed
    segments: list[Segment] = field(default_factory=list)


class _Runner:
    def __init__(self, model: BatchModel, tokens_for: Callable[[float], int], batch_size: int,
                 on_progress: Callable[[Progress], None] | None) -> None:  # fmt: skip
        self.model, self.tokens_for, self.batch = model, tokens_for, batch_size
        self.on_progress = on_progress
        self.pool: list[tuple[_Recording, Clip]] = []
        self.files_done = 0
        self.done_s = 0.0

    def add(self, rec: _Recording, clips: list[Clip]) -> None:
        rec.pending += len(clips)
        self.pool += [(rec, c) for c in clips]
        if len(self.pool) >= self.batch * POOL_BATCHES:
            self.run()

    def run(self) -> None:
        # Longest first: a batch's pieces are of similar length, so little of it is padding.
        self.pool.sort(key=lambda rc: -len(rc[1].audio))
        while self.pool:
            chunk, self.pool = self.pool[: self.batch], self.pool[self.batch :]
            clips = [c for _, c in chunk]
            heard = self.model([c.audio for c in clips], [self.tokens_for(c.piece.seconds) for c in clips])
            for (rec, clip), h in zip(chunk, heard, strict=True):
                rec.segments.append(segment(clip.piece, clip.audio, h))
                rec.pending -= 1
            self.done_s += sum(c.piece.seconds for c in clips)
            self.report()

    def report(self, extra_s: float = 0.0) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(self.files_done, self.done_s + extra_s))


def transcribe_recordings(
    recordings: Iterable[Iterable[np.ndarray]],
    model: BatchModel,
    tokens_for: Callable[[float], int],
    window_samples: int,
    batch_size: int = 8,
    settings: SegmenterSettings | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Iterator[FileTranscript]:
    """Each recording (an iterable of 16 kHz mono float32 blocks) as a ``FileTranscript``, in order.

    A transcript is yielded as soon as all of its pieces are done and those before it are
    out. ``on_progress`` is called after every batch and recording (audio done counts pieces
    transcribed, and the silence between them once a recording is finished).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    runner = _Runner(model, tokens_for, batch_size, on_progress)
    waiting: list[_Recording] = []
    for i, blocks in enumerate(recordings):
        rec = _Recording(i)
        waiting.append(rec)
        cutter = PieceCutter(window_samples, settings)
        for block in blocks:
            rec.read += len(block)
            runner.add(rec, cutter.feed(block))
        runner.add(rec, cutter.flush())
        rec.finished = True
        yield from _ready(waiting, runner)
    runner.run()
    yield from _ready(waiting, runner)


def _ready(waiting: list[_Recording], runner: _Runner) -> Iterator[FileTranscript]:
    """The finished recordings at the head of ``waiting``, in order, as transcripts."""
    while waiting and waiting[0].finished and waiting[0].pending == 0:
        rec = waiting.pop(0)
        seconds = rec.read / SAMPLE_RATE
        # The silence between pieces counts as done once the recording is.
        runner.done_s += seconds - sum(s.end - s.start for s in rec.segments)
        runner.files_done += 1
        runner.report()
        yield assemble(rec.segments, seconds)
