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
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from glmasr_live.audio.segmenter import SegmenterSettings, find_segments
from glmasr_live.events import SAMPLE_RATE, CaptionEvent, join_text

_FRAME = SAMPLE_RATE * 30 // 1000  # 30 ms, the segmenter's frame
_DIP = 1  # frames each side that must be quiet too (a pause, not a stop consonant)


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

    @property
    def compression_ratio(self) -> float:
        """Whisper's repetition gauge: UTF-8 bytes over their zlib size (1.0 for no text)."""
        raw = self.text.encode("utf-8")
        return len(raw) / len(zlib.compress(raw)) if raw else 1.0


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
    heard = model(clip, tokens_for(piece.seconds))
    text = " ".join(heard.text.split())
    return Segment(piece.index, round(piece.start, 3), round(piece.end, 3), text, tuple(heard.token_ids))


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
