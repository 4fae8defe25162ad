"""Long multi-utterance recordings in the demo model's domain, with every word's time known.

For the offline benchmark and tests: short utterances (2 to 7 in-vocabulary words, English
mostly, some Mandarin and Cantonese digits) from held-out espeak-ng voices, at varied levels
over light noise, with pauses of 0.8 to 2 s between them, until the wanted length.
Needs espeak-ng (``glmasr_live.devtools.synth``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE, join_text


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class LongRecording:
    """The audio, each utterance's text and span (seconds), every word's span."""

    audio: np.ndarray
    utterances: tuple[tuple[str, float, float], ...]
    words: tuple[TimedWord, ...]

    @property
    def reference(self) -> str:
        out = ""
        for text, _, _ in self.utterances:
            out = join_text(out, text)
        return out

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _voices(rng: np.random.Generator) -> list[synth.Voice]:
    en = [synth.Voice(b, v, int(rng.integers(140, 175)), int(rng.integers(35, 65)))
          for b in synth.HELDOUT_EN_BASES for v in ("m7", "f4", "klatt4")]  # fmt: skip
    return en + [synth.Voice("cmn", "m7", 150, 50), synth.Voice("yue", "f4", 150, 50)]


def long_recording(seconds: float, seed: int = 0, cjk_share: float = 0.1) -> LongRecording:
    """About ``seconds`` of speech and pauses (the last utterance ends before ``seconds``)."""
    rng = np.random.default_rng(seed)
    voices = _voices(rng)
    en = [v for v in voices if not v.is_cjk]
    cjk = [v for v in voices if v.is_cjk]
    parts = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    pos = len(parts[0])
    utterances, words = [], []
    limit = int(seconds * SAMPLE_RATE)
    while True:
        use_cjk = bool(rng.random() < cjk_share)
        voice = cjk[int(rng.integers(len(cjk)))] if use_cjk else en[int(rng.integers(len(en)))]
        u = synth.word_utterance(synth.random_words(rng, int(rng.integers(2, 8)), use_cjk), voice, rng,
                                 gap_s=(0.05, 0.2), long_pause_p=0.0)  # fmt: skip
        pause = int(rng.uniform(0.8, 2.0) * SAMPLE_RATE)
        if pos + len(u.audio) + pause > limit:
            break
        level = float(rng.uniform(-32, -20))
        parts += [synth.set_level(u.audio, level), np.zeros(pause, np.float32)]
        utterances.append((u.text, pos / SAMPLE_RATE, (pos + len(u.audio)) / SAMPLE_RATE))
        words += [TimedWord(w, (pos + a) / SAMPLE_RATE, (pos + b) / SAMPLE_RATE)
                  for w, (a, b) in zip(u.words, u.spans, strict=True)]  # fmt: skip
        pos += len(u.audio) + pause
    parts.append(np.zeros(max(0, limit - pos), np.float32))
    audio = np.concatenate(parts)
    audio = synth.add_noise(audio, -26.0, float(rng.uniform(30, 40)), "pink", rng, fast=True)
    return LongRecording(audio, tuple(utterances), tuple(words))
