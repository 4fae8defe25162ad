"""The voice bank (every vocabulary word rendered once per training voice, plus whole sentences)
and the training utterances drawn from it."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

Bank = tuple[
    list[synth.Voice],
    list[synth.Voice],
    dict[tuple[str, synth.Voice], np.ndarray],
    list[tuple[list[str], synth.Voice]],
]
"""``render_bank``'s result: English voices, Chinese voices, ``(text, voice) -> audio``, and
the sentences (their words and voice)."""


@dataclass
class Clip:
    audio: np.ndarray
    text: str
    spans: list[tuple[int, int]]
    whispered: bool


def _render_job(args: tuple[str, synth.Voice]) -> tuple[str, synth.Voice, np.ndarray]:
    text, voice = args
    return text, voice, synth.render(text, voice, cache=False)


def _voice(
    rng: np.random.Generator,
    lang: str,
    extended: bool,
    custom: float,
    whisper_share: float = 0.3,
    wide: bool = False,
) -> synth.Voice:
    """A built-in training voice or, for a share ``custom``, a random custom espeak-ng speaker
    (vocal tract, pitch, voice quality; ``whisper_share`` of them whispering; ``wide``: also
    formant strengths, voicing level, consonant loudness and spectral tilt)."""
    if custom and rng.random() < custom:
        whisper = bool(rng.random() < whisper_share)
        return synth.random_variant_voice(rng, lang, whisper=whisper, wide=wide)
    return synth.random_voice(rng, lang=lang, extended=extended)


def render_bank(
    rng: np.random.Generator,
    n_en_voices: int,
    n_cjk_voices: int,
    n_sentences: int,
    extended: bool = False,
    custom: float = 0.0,
    whisper_share: float = 0.3,
    wide: bool = False,
) -> Bank:
    """Render every vocabulary word for a set of random training voices, plus whole sentences."""
    voices_en = [_voice(rng, "en", extended, custom, whisper_share, wide) for _ in range(n_en_voices)]
    voices_cjk = [
        _voice(rng, lang, extended, custom, whisper_share, wide)
        for lang in ("cmn", "yue")
        for _ in range(n_cjk_voices)
    ]
    jobs = [(w, v) for v in voices_en for w in synth.EN_WORDS]
    jobs += [(w, v) for v in voices_cjk for w in synth.CJK_DIGITS]
    sentences = []
    for _ in range(n_sentences):
        cjk = rng.random() < 0.2
        v = (
            voices_cjk[int(rng.integers(len(voices_cjk)))]
            if cjk
            else voices_en[int(rng.integers(len(voices_en)))]
        )
        words = synth.random_words(rng, int(rng.integers(2, 12)), cjk)
        sentences.append((words, v))
        # espeak reads a comma as a short pause: natural coarticulated speech with pauses
        jobs.append((", ".join(words) if not cjk else "，".join(words), v))
    # Threads, not processes: each render waits on an espeak-ng child process, and a forked
    # worker would inherit the caller's threads' locks and signal handlers (a pool forked from
    # the test process once hung on exit).
    with ThreadPoolExecutor(2) as pool:
        rendered = list(pool.map(_render_job, jobs))
    table = {(t, v): a for t, v, a in rendered}
    return voices_en, voices_cjk, table, sentences


def perturb_speed(clip: Clip, factor: float) -> Clip:
    """``clip`` played ``factor`` times faster (and higher), word spans moved with it."""
    out_rate = int(round(SAMPLE_RATE / factor))
    audio = soxr.resample(clip.audio, SAMPLE_RATE, out_rate).astype(np.float32)
    scale = len(audio) / max(1, len(clip.audio))
    spans = [
        (int(a * scale), min(len(audio), max(int(a * scale) + 1, int(b * scale)))) for a, b in clip.spans
    ]
    return Clip(audio, clip.text, spans, clip.whispered)


def _plain(v: synth.Voice) -> bool:
    """A built-in, voiced speaker (the ``--easy-steps`` curriculum's voices)."""
    return not v.whispered and not v.variant.startswith(synth.CUSTOM_PREFIX)


class Synthesizer:
    """Builds random training utterances from the rendered bank."""

    def __init__(
        self,
        bank: Bank,
        rng: np.random.Generator,
        quiet_share: float = 0.0,
        speed_perturb: float = 0.0,
        long_share: float = 0.3,
        sentence_share: float = 0.3,
    ):
        self.voices_en, self.voices_cjk, self.table, self.sentences = bank
        self.rng = rng
        self.quiet_share = quiet_share
        self.speed_perturb = speed_perturb
        """Resample a clip by a random factor within 1 ± this (tempo, pitch and formants move
        together, like a new speaker's vocal tract); 0: off, and no random draw."""
        self.long_share = long_share
        """Share of word clips of 5-14 s (several windows); the rest are 0.6-5 s."""
        self.sentence_share = sentence_share
        """Share of speech clips that are whole sentences rendered in one piece (no word spans)."""
        self.easy = False
        """Curriculum: built-in, voiced speakers at -35…-18 dBFS only (see ``--easy-steps``)."""
        self._easy_en = [v for v in self.voices_en if _plain(v)] or self.voices_en
        self._easy_cjk = [v for v in self.voices_cjk if _plain(v)] or self.voices_cjk
        self._easy_sentences = [x for x in self.sentences if _plain(x[1])] or self.sentences

    def _words_clip(self) -> Clip:
        rng = self.rng
        cjk = rng.random() < 0.18
        if self.easy:
            bank = self._easy_cjk if cjk else self._easy_en
        else:
            bank = self.voices_cjk if cjk else self.voices_en
        voice = bank[int(rng.integers(len(bank)))]
        dur = rng.uniform(0.6, 5.0) if rng.random() < 1 - self.long_share else rng.uniform(5.0, 14.0)
        n = max(1, int(dur / (0.35 if cjk else 0.55)))
        words = synth.random_words(rng, n, cjk)
        pieces, spans, pos = [], [], 0
        for i, w in enumerate(words):
            if i:
                g = rng.uniform(0.3, 0.9) if rng.random() < 0.12 else rng.uniform(0.03, 0.22)
                k = int(g * SAMPLE_RATE)
                pieces.append(np.zeros(k, np.float32))
                pos += k
            a = self.table[(w, voice)]
            pieces.append(a)
            spans.append((pos, pos + len(a)))
            pos += len(a)
        return Clip(np.concatenate(pieces), synth.join_words(words, cjk), spans, voice.whispered)

    def _sentence_clip(self) -> Clip:
        sentences = self._easy_sentences if self.easy else self.sentences
        words, voice = sentences[int(self.rng.integers(len(sentences)))]
        text_in = "，".join(words) if voice.is_cjk else ", ".join(words)
        a = self.table[(text_in, voice)]
        return Clip(a.copy(), synth.join_words(words, voice.is_cjk), [(0, len(a))], voice.whispered)

    def _background(self) -> tuple[np.ndarray, str, list[tuple[int, int]]]:
        """Silence or noise alone, with an empty transcript."""
        rng = self.rng
        n = int(rng.uniform(0.5, 10) * SAMPLE_RATE)
        if rng.random() < 0.3:
            return np.zeros(n, np.float32), "", []
        kind = str(rng.choice(["white", "pink", "brown"]))
        return synth.noise(kind, n, rng, fast=True) * 10 ** (rng.uniform(-70, -35) / 20), "", []

    def sample(self) -> tuple[np.ndarray, str, list[tuple[int, int]]]:
        rng = self.rng
        if rng.random() < 0.08:  # silence or noise alone -> empty transcript
            return self._background()
        clip = self._sentence_clip() if rng.random() < self.sentence_share else self._words_clip()
        if self.speed_perturb and not self.easy:
            clip = perturb_speed(clip, float(rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb)))
        lead = int(rng.uniform(0, 1.2) * SAMPLE_RATE) if rng.random() < 0.6 else 0
        trail = int(rng.uniform(0, 1.2) * SAMPLE_RATE) if rng.random() < 0.6 else 0
        audio = np.concatenate([np.zeros(lead, np.float32), clip.audio, np.zeros(trail, np.float32)])
        spans = [(s + lead, e + lead) for s, e in clip.spans]
        quiet = self.quiet_share > 0 and not self.easy and rng.random() < self.quiet_share  # no draw when off
        level = (
            rng.uniform(-35, -18) if self.easy else rng.uniform(-50, -36) if quiet else rng.uniform(-50, -18)
        )
        speech = audio[spans[0][0] : spans[-1][1]]
        audio = synth.set_level(audio, level, active=speech)
        if rng.random() < 0.6:
            kind = str(rng.choice(["white", "pink", "brown"]))
            audio = synth.add_noise(audio, level, rng.uniform(10, 35), kind, rng, fast=True)
        return audio, clip.text, spans


def load_bank(path: Path, recipe: tuple, rng: np.random.Generator) -> Bank:
    """The bank that ``save_bank`` wrote for ``recipe``; ``rng`` is set to where it was after
    rendering, so a run from the cache draws the same random numbers as one that rendered.
    A ``ValueError`` says why the file is not that bank."""
    try:
        with path.open("rb") as f:
            cached, bank, state = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ValueError(f"--bank-cache {path}: not a voice bank written by this script ({e})") from e
    if cached != recipe:
        raise ValueError(f"--bank-cache {path} holds another bank {cached}, not {recipe}")
    rng.bit_generator.state = state  # the same random numbers as after rendering it
    return bank


def save_bank(path: Path, recipe: tuple, bank: Bank, rng: np.random.Generator) -> None:
    with path.open("wb") as f:
        pickle.dump((recipe, bank, rng.bit_generator.state), f)
