"""Records that flow between pipeline stages, and the public caption event (schema v2).

Times are seconds of *stream audio* (the 16 kHz sample clock of the input), never wall time,
except ``wall_time`` which says when an event was emitted on this machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SAMPLE_RATE = 16_000
"""Every stage after the input works on 16 kHz mono float32."""

SCHEMA_VERSION = 2
"""v2 added ``stream``, ``room`` and ``speaker`` (the server's events); v1 lines still load."""

EventType = Literal["partial", "final", "status"]


@dataclass(frozen=True, slots=True)
class CaptionEvent:
    """One caption event: the same JSON object on the websocket, in the journal and from
    ``transcribe --format jsonl``. Published as ``assets/caption-event.schema.json``.

    Fields:
        type: ``partial`` (may still change), ``final`` (never revised) or ``status``.
        seq: sequence number, strictly increasing over a session (finals and partials alike).
        utterance: id of the utterance (VAD segment) the caption belongs to; -1 for status.
        start: start of the utterance, seconds of stream audio.
        end: end of the audio the caption covers, seconds of stream audio.
        committed: text that will not change any more (for a final: all of it).
        tentative: text after ``committed`` that may still change (empty for a final).
        text: ``committed`` and ``tentative`` joined the way they read.
        audio_clock: stream audio time when the event was emitted (for latency).
        wall_time: Unix time when the event was emitted.
        status: for status events, a short machine-readable code (``behind``, ``worker_error``...).
        message: for status events, a human-readable line.
        lag: how far the stream's captions are behind its audio (seconds) when emitted.
        stream: the server's id of the stream the event came from (``serve`` only).
        room: the room the stream publishes into (``serve`` only).
        speaker: the stream's speaker name (``serve`` only).
    """

    type: EventType
    seq: int
    utterance: int
    start: float
    end: float
    committed: str
    tentative: str
    text: str
    audio_clock: float
    wall_time: float
    status: str | None = None
    message: str | None = None
    lag: float = 0.0
    stream: str | None = None
    room: str | None = None
    speaker: str | None = None
    v: int = field(default=SCHEMA_VERSION)

    @property
    def is_final(self) -> bool:
        return self.type == "final"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.type != "status":
            d.pop("status")
            d.pop("message")
        for key in _SERVER_FIELDS:
            if d[key] is None:
                del d[key]  # a local session's events carry no stream, room or speaker
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptionEvent:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, line: str) -> CaptionEvent:
        return cls.from_dict(json.loads(line))


_SERVER_FIELDS = ("stream", "room", "speaker")


def join_text(committed: str, tentative: str) -> str:
    """Join committed and tentative text the way it reads (no space between CJK characters)."""
    if not committed:
        return tentative
    if not tentative:
        return committed
    if committed[-1].isspace() or tentative[0].isspace():
        return committed + tentative
    if _is_cjk(committed[-1]) or _is_cjk(tentative[0]):
        return committed + tentative
    return committed + " " + tentative


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3000 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FA1F


def is_cjk(ch: str) -> bool:
    """True for Han characters, CJK punctuation and full-width forms."""
    return _is_cjk(ch)


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """The segmenter saw speech begin. ``sample`` includes the pre-roll (absolute 16 kHz index)."""

    utterance: int
    sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """The segmenter closed an utterance at ``sample`` (exclusive, absolute 16 kHz index).

    ``forced`` is True when the utterance was split because it reached the maximum length.
    ``sure``: whether the segmenter is sure it was speech (its learned second opinion, or
    whisper-like frames); None when it cannot say (``SegmenterSettings.doubt``).
    """

    utterance: int
    sample: int
    forced: bool = False
    sure: bool | None = field(default=None, compare=False)  # evidence about it, not its identity


@dataclass(frozen=True, slots=True)
class AudioGap:
    """Samples that were lost (overflow, dead device) before absolute index ``sample``.

    Stages never glue audio across a gap silently: an open utterance ends at a gap.
    """

    sample: int
    missing: int
    reason: str


SegmentRecord = SpeechStart | SpeechEnd


@dataclass(frozen=True)
class Hypothesis:
    """What one step produced for the current utterance.

    ``end_sample`` is the utterance-relative sample the hypothesis covers up to. ``committed``
    and ``tentative`` are the utterance's text; ``ids`` and ``committed_ids`` are the tokens of
    the prompt's answer, which covers the audio from ``context_start`` on (the text before it
    was retired from the prompt). ``logprob`` is the model's own confidence in the answer.
    """

    committed: str
    tentative: str
    end_sample: int
    final: bool
    step_seconds: float
    ids: tuple[int, ...] = ()
    committed_ids: tuple[int, ...] = ()
    context_start: int = 0
    forced: int = 0  # how many of ``ids`` were forced (committed before the step)
    # Mean log-probability per answer token, its end included (None: no tokens, or not known).
    logprob: float | None = None


def fallback_final(last: Hypothesis | None, end_sample: int) -> Hypothesis:
    """The final of an utterance whose last step failed: what its latest hypothesis had."""
    text = "" if last is None else join_text(last.committed, last.tentative)
    return Hypothesis(text, "", end_sample, True, 0.0)


WorkKind = Literal["partial", "final"]


@dataclass(frozen=True, slots=True, eq=False)
class Work:
    """A decode step a stream wants (from ``StreamPolicy.take`` to the scheduler).

    ``audio`` is the utterance's audio the stream's decoder has not been fed yet (absolute
    samples ``[upto - len(audio), upto)``); ``restart`` means the decoder starts the utterance
    afresh first (a new utterance, or one replayed from its start after a fault). ``due`` is the
    stream clock when the step became due (the scheduler serves the longest waiting first).
    """

    kind: WorkKind
    utterance: int
    start: int
    upto: int
    audio: Any
    restart: bool
    due: float


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A snapshot of the live pipeline for status displays, emitted a few times per second.

    Fields:
        audio_clock: seconds of stream audio captured so far.
        level_dbfs: input level (RMS of the last ~100 ms) in dBFS.
        speech: the segmenter's state (True while inside an utterance).
        gain_db: gain the segmenter applies to quiet speech before the VAD.
        step_ms: wall time of the last model step.
        rtf: model time / audio time over the last steps (below 1 keeps up with real time).
        latency_s: stream audio clock minus the end of the audio the last caption covered.
        dropped_samples: input samples lost so far (overflows, device gaps).
        skipped_partials: partial jobs the worker skipped because it fell behind.
        subscribers: websocket subscribers connected.
        paused: capture paused by the user.
    """

    audio_clock: float = 0.0
    level_dbfs: float = -120.0
    speech: bool = False
    gain_db: float = 0.0
    step_ms: float = 0.0
    rtf: float = 0.0
    latency_s: float = 0.0
    dropped_samples: int = 0
    skipped_partials: int = 0
    subscribers: int = 0
    paused: bool = False


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a live session runs with, for the status bar and start-up messages."""

    input_name: str = ""
    input_rate: int = SAMPLE_RATE
    model: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    ws_url: str | None = None
    transcripts: tuple[str, ...] = ()
    overlay_url: str | None = None


def format_clock(seconds: float) -> str:
    """``HH:MM:SS`` of stream audio (the time a caption starts in the recording)."""
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
