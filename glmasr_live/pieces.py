"""A whole recording as pieces: cut at the segmenter's utterances, each transcribed on its own.

::

    pieces = cut(audio, window_samples=engine.window_samples)
    segments = [run_piece(model, engine.max_new_tokens, audio, p) for p in pieces]
    result = assemble(segments, duration=len(audio) / SAMPLE_RATE)

A piece is one utterance of the segmenter (pre- and post-roll included), never longer than
the model's window: the segmenter splits long speech at its quietest point, and anything
still over the window is split again here (at the quietest stretch of its second half, so
every cut moves at least half a window on). Each piece is one model call with its own token
cap from its own length, so one long piece does not raise the cap of short ones.

No I/O, no threads, no torch: the model call comes in as a callable, so the server can run
each piece as one job on the model's thread, and ``transcribe`` here runs them in a row.
``PieceCutter`` cuts the same pieces from a recording fed in blocks, holding only the open
utterance and a few seconds before it (``glmasr_live.offline`` batches them).

Each segment also keeps where in its piece there was speech (``Segment.speech``: loud 30 ms
frames, merged), so subtitle cues can be timed inside a piece (``captions.cues``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from glmasr_live.audio.segmenter import Segmenter, SegmenterSettings, find_segments
from glmasr_live.events import SAMPLE_RATE, CaptionEvent, SpeechEnd, SpeechStart, join_text
from glmasr_live.gate import compression_ratio

_FRAME = SAMPLE_RATE * 30 // 1000  # 30 ms, the segmenter's frame
_DIP = 1  # frames each side that must be quiet too (a pause, not a stop consonant)
_SPEECH_RANGE = 0.6  # a frame is speech above this fraction of the way down from peak to floor
_KEEP_S = 10.0  # audio kept behind the segmenter: a SpeechStart points at most a few s back


class Heard(Protocol):
    """What one model call returns (``asr.engine.Transcript`` is one)."""

    @property
    def text(self) -> str: ...

    @property
    def token_ids(self) -> tuple[int, ...]: ...


PieceModel = Callable[[np.ndarray, int], Heard]
"""``model(audio, max_new_tokens)``: one piece of 16 kHz mono float32 audio → its transcript."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Samples ``[start_sample, end_sample)`` of the recording; ``index`` counts from 0."""

    index: int
    start_sample: int
    end_sample: int

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.end_sample / SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Segment:
    """One transcribed piece: times in seconds of the recording, the text and its token ids."""

    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    speech: tuple[tuple[float, float], ...] = ()
    """Stretches (seconds of the recording) inside the piece that sound like speech."""

    @property
    def compression_ratio(self) -> float:
        """Whisper's repetition gauge: UTF-8 bytes over their zlib size (1.0 for no text)."""
        return compression_ratio(self.text)


@dataclass(frozen=True, slots=True)
class FileTranscript:
    """A recording's segments in order, their text joined the way it reads, its duration."""

    segments: tuple[Segment, ...]
    text: str
    duration: float


def cut(audio: np.ndarray, window_samples: int, settings: SegmenterSettings | None = None) -> list[Piece]:
    """The recording's speech as pieces in order, none longer than ``window_samples``."""
    if window_samples < 2 * _FRAME:
        raise ValueError(f"window of {window_samples} samples is too short to cut pieces for")
    spans: list[tuple[int, int]] = []
    for start, end in find_segments(audio, _fit_settings(settings or SegmenterSettings(), window_samples)):
        spans += split_long(audio, start, end, window_samples)
    return [Piece(i, s, e) for i, (s, e) in enumerate(spans)]


def _fit_settings(settings: SegmenterSettings, window_samples: int) -> SegmenterSettings:
    # The segmenter's own forced split looks at its frame levels, so let it cut first; its
    # search span must stay under the maximum length (it checks), half the window at most.
    window_s = window_samples / SAMPLE_RATE
    if settings.max_utterance_s <= window_s:
        return settings
    search = min(settings.split_search_s, window_s / 2)
    return replace(settings, max_utterance_s=window_s, split_search_s=search)


def split_long(audio: np.ndarray, start: int, end: int, window_samples: int) -> list[tuple[int, int]]:
    """``[start, end)`` as consecutive spans of at most ``window_samples``, cut at quiet points."""
    spans = []
    while end - start > window_samples:
        cut_at = _quietest(audio, start + window_samples // 2, start + window_samples)
        spans.append((start, cut_at))
        start = cut_at
    spans.append((start, end))
    return spans


def _quietest(audio: np.ndarray, lo: int, hi: int) -> int:
    """A cut point in ``(lo, hi]``: the middle of the frame whose neighbourhood is quietest."""
    x = np.asarray(audio[lo:hi], np.float64)
    n = len(x) // _FRAME
    if n < 2 * _DIP + 1:
        return hi  # too little to choose from: cut evenly at the window's end
    energy = (x[: n * _FRAME].reshape(n, _FRAME) ** 2).mean(axis=1)
    # Score a frame by its loudest neighbour, so the cut lands in a pause as wide as 3 frames.
    padded = np.pad(energy, _DIP, mode="edge")
    score = np.lib.stride_tricks.sliding_window_view(padded, 2 * _DIP + 1).max(axis=1)
    best = int(np.argmin(score))
    return min(hi, lo + best * _FRAME + _FRAME // 2)


def run_piece(
    model: PieceModel, tokens_for: Callable[[float], int], audio: np.ndarray, piece: Piece
) -> Segment:
    """Transcribe one piece with a token cap from its own length (``tokens_for(seconds)``)."""
    clip = np.ascontiguousarray(audio[piece.start_sample : piece.end_sample], np.float32)
    return segment(piece, clip, model(clip, tokens_for(piece.seconds)))


def segment(piece: Piece, clip: np.ndarray, heard: Heard) -> Segment:
    """The record of one transcribed piece (``clip``: its audio, for the speech stretches)."""
    text = " ".join(heard.text.split())
    return Segment(piece.index, round(piece.start, 3), round(piece.end, 3), text,
                   tuple(heard.token_ids), speech_spans(clip, piece.start))  # fmt: skip


def speech_spans(clip: np.ndarray, offset: float) -> tuple[tuple[float, float], ...]:
    """Runs of 30 ms frames loud enough to be speech, as (start, end) seconds from ``offset``.

    The threshold sits ``_SPEECH_RANGE`` of the way down from the clip's loud level (95th
    percentile of frame levels) to its floor (10th), so it follows the recording's own level.
    """
    n = len(clip) // _FRAME
    if n == 0:
        return ()
    x = np.asarray(clip[: n * _FRAME], np.float64).reshape(n, _FRAME)
    db = 10 * np.log10(np.maximum((x * x).mean(axis=1), 1e-10))
    floor, peak = np.percentile(db, [10, 95])
    loud = db >= peak - _SPEECH_RANGE * (peak - floor) if peak - floor > 6 else np.ones(n, bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    sec = _FRAME / SAMPLE_RATE
    return tuple((round(offset + a * sec, 3), round(offset + b * sec, 3)) for a, b in edges.reshape(-1, 2))


@dataclass(frozen=True, slots=True)
class Clip:
    """A piece and its audio (16 kHz mono float32, ``piece.end_sample - piece.start_sample`` long)."""

    piece: Piece
    audio: np.ndarray


class PieceCutter:
    """Feed a recording in blocks of any size; get its pieces, with their audio, as they close.

    The pieces are the ones ``cut`` finds on the whole recording (the segmenter's records do
    not depend on block sizes). Memory: the open utterance (at most a window) plus
    ``_KEEP_S`` behind the segmenter, however long the recording. Not thread-safe.
    """

    def __init__(self, window_samples: int, settings: SegmenterSettings | None = None) -> None:
        if window_samples < 2 * _FRAME:
            raise ValueError(f"window of {window_samples} samples is too short to cut pieces for")
        self._segmenter = Segmenter(_fit_settings(settings or SegmenterSettings(), window_samples))
        self._window = window_samples
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # recording sample index of self._buf[0]
        self._open: int | None = None
        self._count = 0
        self._keep = int(_KEEP_S * SAMPLE_RATE)

    @property
    def position(self) -> int:
        """Samples fed so far."""
        return self._segmenter.position

    def feed(self, block: np.ndarray) -> list[Clip]:
        x = np.asarray(block, np.float32)
        self._buf = np.concatenate([self._buf, x]) if len(self._buf) else x.copy()
        out = self._take(self._segmenter.feed(x))
        self._trim()
        return out

    def flush(self) -> list[Clip]:
        """End of the recording: the last utterance's pieces, if one is open."""
        return self._take(self._segmenter.flush())

    def _take(self, records: list[SpeechStart | SpeechEnd]) -> list[Clip]:
        out: list[Clip] = []
        for r in records:
            if isinstance(r, SpeechStart):
                self._open = r.sample
            elif self._open is not None:
                out += self._clips(max(self._open, self._buf_start), r.sample)
                self._open = None
        return out

    def _clips(self, start: int, end: int) -> list[Clip]:
        audio = self._buf[start - self._buf_start : end - self._buf_start]
        out = []
        for a, b in split_long(audio, 0, len(audio), self._window):
            out.append(Clip(Piece(self._count, start + a, start + b), audio[a:b].copy()))
            self._count += 1
        return out

    def _trim(self) -> None:
        keep_from = self.position - self._keep
        if self._open is not None:
            keep_from = min(keep_from, self._open)
        drop = keep_from - self._buf_start
        if drop > self._keep:  # in steps of _KEEP_S: a copy per 10 s, not per block
            self._buf = self._buf[drop:].copy()
            self._buf_start += drop


def join(texts: Sequence[str]) -> str:
    """Pieces' texts as one text: a space between words, none next to CJK characters."""
    out = ""
    for t in texts:
        if t:
            out = join_text(out, t)
    return out


def assemble(segments: Sequence[Segment], duration: float) -> FileTranscript:
    ordered = tuple(sorted(segments, key=lambda s: s.id))
    return FileTranscript(ordered, join([s.text for s in ordered]), round(duration, 3))


def transcribe(audio: np.ndarray, model: PieceModel, tokens_for: Callable[[float], int],
               window_samples: int, settings: SegmenterSettings | None = None) -> FileTranscript:  # fmt: skip
    """The whole stage in a row on this thread (the server runs ``run_piece`` per job instead)."""
    segments = [run_piece(model, tokens_for, audio, p) for p in cut(audio, window_samples, settings)]
    return assemble(segments, len(audio) / SAMPLE_RATE)


def finals(result: FileTranscript) -> list[CaptionEvent]:
    """The segments with text as final caption events, for the SRT/VTT/TXT renderers."""
    return [
        CaptionEvent("final", i, s.id, s.start, s.end, s.text, "", s.text, s.end, 0.0)
        for i, s in enumerate(x for x in result.segments if x.text)
    ]
