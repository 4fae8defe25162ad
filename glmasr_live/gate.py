"""The caption gate (pure): no caption from sound that is not speech.

A hypothesis is hidden when *both* judges doubt it, as Whisper skips a segment only when its
no-speech probability is high *and* its text's log-probability is low:

- the segmenter was not sure the utterance is speech (``SpeechEnd.sure`` is False: its learned
  second opinion never reached ``sure_prob`` and few frames were whisper-like), and
- the model was not sure of its words: the mean log-probability per answer token (its end
  included) is under ``min_logprob``, or the text repeats itself (zlib compression ratio over
  ``max_compression``, Whisper's gauge of a loop: "no no red red no no ...").

Speech the segmenter is sure of is never gated, so a confident segmenter costs no words; where
the segmenter cannot say (``sure`` is None: no second opinion installed, or
``--caption-gate off``) the gate stands aside. Thresholds and their measurement:
docs/segmenter.md ("The caption gate"), ``python -m glmasr_live.devtools.gatebench``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from glmasr_live.events import Hypothesis, join_text


@dataclass(frozen=True)
class GateSettings:
    """Fields:
    min_logprob: a doubted utterance's answer needs at least this mean log-probability per token.
    max_compression: a doubted utterance's text may compress at most this much (a loop does more).
    """

    min_logprob: float = -0.05
    max_compression: float = 2.4


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """A hypothesis the gate hid: step kind, reason, the model's mean log-probability, the
    text, and the utterance's audio (absolute samples)."""

    kind: str
    reason: str
    logprob: float | None
    text: str
    start: int
    end: int


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over their zlib size (1.0 for no text): high when the text loops."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 1.0


def apply(
    hyp: Hypothesis, sure: bool | None, settings: GateSettings, kind: str, start: int
) -> tuple[Hypothesis, GateVerdict | None]:
    """``hyp`` as it may be shown (no text where the gate hides it) and the verdict, if any."""
    why = verdict(hyp, sure, settings)
    if why is None:
        return hyp, None
    text = join_text(hyp.committed, hyp.tentative)
    hidden = Hypothesis("", "", hyp.end_sample, hyp.final, hyp.step_seconds, logprob=hyp.logprob)
    return hidden, GateVerdict(kind, why, hyp.logprob, text, start, start + hyp.end_sample)


def verdict(hyp: Hypothesis, sure: bool | None, settings: GateSettings) -> str | None:
    """Why ``hyp`` is not to be shown ("unsure" or "repetition"), or None to show it."""
    if sure is None or sure:
        return None
    if hyp.logprob is not None and hyp.logprob < settings.min_logprob:
        return "unsure"
    if compression_ratio(join_text(hyp.committed, hyp.tentative)) > settings.max_compression:
        return "repetition"
    return None
