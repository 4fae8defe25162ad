"""Synthetic test speech with espeak-ng: the demo model's training data, test audio, benchmarks.

Words are rendered one at a time (cached) and joined with chosen gaps, so every word's start
and end sample is known exactly: latency and VAD benchmarks need that ground truth.
Needs the ``espeak-ng`` program (Debian: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
import soxr

from glmasr_live.errors import GlmAsrLiveError
from glmasr_live.events import SAMPLE_RATE

EN_WORDS = (
    "zero one two three four five six seven eight nine "
    "hello yes no stop go left right up down start open close red green blue please thank you next back"
).split()
"""The demo model's English vocabulary: digits and twenty command words (30 words)."""

CJK_DIGITS = list("零一二三四五六七八九")
"""Mandarin (``cmn``) and Cantonese (``yue``) digits, written as characters."""

EN_BASES = [
    "en",
    "en-us",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-us-nyc",
    "en-gb-scotland",
    "en-gb-x-gbcwmd",
]
TRAIN_EN_BASES = EN_BASES[:6]
HELDOUT_EN_BASES = EN_BASES[6:]
TRAIN_VARIANTS = [
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "f1",
    "f2",
    "f3",
    "klatt",
    "klatt2",
    "croak",
    "whisper",
    "max",
    "steph",
    "robert",
]
HELDOUT_VARIANTS = ["m7", "f4", "whisperf", "klatt4", "anika"]
EXTRA_TRAIN_VARIANTS = ["adam", "Alex", "Andy", "Annie", "boris", "edward", "Gene", "iven", "john", "linda",
                        "paul", "pedro", "quincy", "rob", "sandro", "shelby", "travis", "victor", "zac", "m6",
                        "m8", "f5", "klatt3", "klatt5", "klatt6"]  # fmt: skip
"""More training variants (the demo model's last training stage); none is held out."""
WHISPER_VARIANTS = {"whisper", "whisperf"}


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: language, variant (``m3``, ``whisper``...), speed (wpm) and pitch."""

    lang: str = "en"
    variant: str = ""
    speed: int = 160
    pitch: int = 50
    spec: str = ""
    """The text of a custom espeak-ng variant file (``variant`` names it); empty for built-in ones."""

    @property
    def name(self) -> str:
        return f"{self.lang}+{self.variant}" if self.variant else self.lang

    @property
    def is_cjk(self) -> bool:
        return self.lang in ("cmn", "yue")

    @property
    def whispered(self) -> bool:
        return self.variant in WHISPER_VARIANTS or self.variant.startswith(CUSTOM_WHISPER_PREFIX)


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise GlmAsrLiveError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return exe


CUSTOM_PREFIX = "rv"
CUSTOM_WHISPER_PREFIX = "rvw"


@functools.lru_cache(maxsize=1)
def _espeak_data() -> str:
    out = subprocess.run([require_espeak(), "--version"], check=True, capture_output=True, text=True).stdout
    return out.split("Data at:")[-1].strip()


@functools.lru_cache(maxsize=1024)
def _custom_data_dir(variant: str, spec: str) -> str:
    """A private espeak-ng data directory: the system one (linked) with one custom variant.

    One directory per variant: espeak-ng lists at most 350 voices, built-ins included."""
    system = _espeak_data()
    root = tempfile.mkdtemp(prefix="glmasr-espeak-")
    atexit.register(shutil.rmtree, root, True)
    data = os.path.join(root, "espeak-ng-data")
    os.makedirs(os.path.join(data, "voices", "!v"))
    for entry in os.listdir(system):
        if entry != "voices":
            os.symlink(os.path.join(system, entry), os.path.join(data, entry))
    for entry in os.listdir(os.path.join(system, "voices")):
        if entry != "!v":
            os.symlink(os.path.join(system, "voices", entry), os.path.join(data, "voices", entry))
    with open(os.path.join(data, "voices", "!v", variant), "w") as f:
        f.write(spec)
    return root


def random_variant_voice(
    rng: np.random.Generator, lang: str = "en", whisper: bool = False, wide: bool = False
) -> Voice:
    """A random synthetic speaker: a custom espeak-ng variant (vocal-tract scale, pitch, voice
    quality; whispered when ``whisper``), so training sees far more speakers than the built-ins.

    ``wide`` also varies what the narrow speakers never do: formant strengths over a wider
    range, the voicing level (breathy, weakly voiced speakers), consonant loudness and the
    spectral tilt (``tone``). With ``wide`` off the random draws are exactly the narrow ones."""
    female = bool(rng.random() < 0.5)
    base = rng.uniform(150, 230) if female else rng.uniform(70, 135)
    scale = rng.uniform(1.0, 1.2) if female else rng.uniform(0.86, 1.06)
    lines = [
        "language variant",
        "name custom",
        f"gender {'female' if female else 'male'}",
        f"pitch {int(base)} {int(base + rng.uniform(20, 90))}",
    ]
    for k in range(9):
        freq = int(100 * scale * rng.uniform(0.94, 1.06))
        lo, hi = ((50, 210) if k < 6 else (0, 130)) if wide else (70, 130)
        lines.append(f"formant {k} {freq} {int(rng.uniform(lo, hi))} {int(rng.uniform(80, 160))}")
    lines.append(f"flutter {int(rng.uniform(0, 30))}")
    lines.append(f"roughness {int(rng.integers(0, 6))}")
    if whisper:
        top = rng.uniform(55, 90)
        breath = [top, top, top * rng.uniform(0.55, 0.8), top * rng.uniform(0.4, 0.6), 15, 10]
        lines.append(f"voicing {int(rng.uniform(8, 28))}")
        lines.append("breath " + " ".join(str(int(b)) for b in breath))
        widths = [150, 150, 200, 200, 400, 400]
        lines.append("breathw " + " ".join(str(int(w * rng.uniform(0.8, 1.2))) for w in widths))
    elif rng.random() < 0.3:
        lines.append(f"breath {int(rng.uniform(10, 40))} {int(rng.uniform(10, 30))}")
    elif rng.random() < 0.3:
        lines.append(f"klatt {int(rng.integers(1, 7))}")
    if wide:
        lines += _wide_quality(rng, whisper)
    spec = "\n".join(lines) + "\n"
    tag = hashlib.sha1(spec.encode()).hexdigest()[:8]
    name = (CUSTOM_WHISPER_PREFIX if whisper else CUSTOM_PREFIX + "v") + tag
    return Voice(lang, name, int(rng.integers(120, 200)), int(rng.integers(25, 75)), spec)


def _wide_quality(rng: np.random.Generator, whisper: bool) -> list[str]:
    """Voice-quality lines of a ``wide`` random speaker: each axis drawn for about half of them."""
    lines = []
    if not whisper and rng.random() < 0.5:
        lines.append(f"voicing {int(rng.uniform(25, 100))}")
    if rng.random() < 0.5:
        lines.append(f"consonants {int(rng.uniform(40, 140))} {int(rng.uniform(30, 130))}")
    if rng.random() < 0.6:
        # spectral tilt: a gain (percent) at each of five frequencies, from bass-heavy to thin
        freqs = (100, 600, 1200, 2000, 3000)
        gains = [int(rng.uniform(10, 255)) for _ in freqs]
        lines.append("tone " + " ".join(f"{f} {g}" for f, g in zip(freqs, gains, strict=True)))
    return lines


def _espeak_command(exe: str, voice: Voice, path: str, text: str) -> list[str]:
    cmd = [exe]
    if voice.spec:
        cmd += ["--path", _custom_data_dir(voice.variant, voice.spec)]
    return cmd + ["-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "-w", path, text]


def _render_once(text: str, voice: Voice) -> np.ndarray:
    exe = require_espeak()
    fd, path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        subprocess.run(_espeak_command(exe, voice, path, text), check=True, capture_output=True)
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    finally:
        os.unlink(path)
    mono = audio.mean(axis=1)
    out = soxr.resample(mono, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else mono
    out = trim_silence(out.astype(np.float32))
    out.setflags(write=False)
    return out


_render_cached = functools.lru_cache(maxsize=8192)(_render_once)


def render(text: str, voice: Voice, cache: bool = True) -> np.ndarray:
    """Speech for ``text`` at 16 kHz, leading and trailing silence trimmed (a copy).

    ``cache``: keep the clip in this process's cache of recent renders (``False`` for callers
    that keep every clip themselves, such as the training script's voice bank)."""
    return (_render_cached(text, voice) if cache else _render_once(text, voice)).copy()


def trim_silence(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > threshold * max(1e-9, float(np.abs(x).max())) * 10)
    if idx.size == 0:
        return x[:0]
    return x[idx[0] : idx[-1] + 1]


def rms_dbfs(x: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20 * np.log10(max(r, 1e-12))


def set_level(x: np.ndarray, dbfs: float, active: np.ndarray | None = None) -> np.ndarray:
    """Scale ``x`` so that the RMS of ``active`` (default: all of ``x``) is ``dbfs`` dB full scale."""
    ref = x if active is None else active
    gain = 10 ** ((dbfs - rms_dbfs(ref)) / 20)
    return (x * gain).astype(np.float32)


def fast_fft_length(n: int) -> int:
    """The smallest length >= ``n`` whose only prime factors are 2, 3 and 5 (a fast FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def noise(kind: str, n: int, rng: np.random.Generator, fast: bool = False) -> np.ndarray:
    """Unit-RMS stationary noise: ``white``, ``pink`` or ``brown``. ``fast``: colour a noise of
    a fast FFT length and keep its first ``n`` samples (several times faster for lengths with
    large prime factors; other random draws than without it)."""
    m = fast_fft_length(n) if fast and kind != "white" else n
    w = rng.standard_normal(m)
    if kind == "white":
        y = w
    else:
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(m, 1 / SAMPLE_RATE)
        f[0] = f[1] if m > 1 else 1.0
        spec = spec / (np.sqrt(f) if kind == "pink" else f)
        y = np.fft.irfft(spec, m)[:n]
    y = y - y.mean()
    return (y / max(float(np.sqrt(np.mean(y**2))), 1e-12)).astype(np.float32)


def add_noise(
    x: np.ndarray, speech_dbfs: float, snr_db: float, kind: str, rng: np.random.Generator, fast: bool = False
):
    """Add ``kind`` noise at ``speech_dbfs - snr_db`` dBFS RMS (``fast``: see ``noise``)."""
    level = 10 ** ((speech_dbfs - snr_db) / 20)
    return (x + noise(kind, len(x), rng, fast) * level).astype(np.float32)


@dataclass
class Utterance:
    """Rendered speech with its transcript and the sample span of every word."""

    audio: np.ndarray
    text: str
    words: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    voice: Voice = field(default_factory=Voice)


def join_words(words: list[str], cjk: bool) -> str:
    return "".join(words) if cjk else " ".join(words)


def word_utterance(
    words: list[str],
    voice: Voice,
    rng: np.random.Generator,
    gap_s: tuple[float, float] = (0.04, 0.22),
    long_pause_p: float = 0.12,
    long_pause_s: tuple[float, float] = (0.35, 0.9),
) -> Utterance:
    """Render ``words`` one at a time and join them with random gaps (occasionally a long pause)."""
    pieces: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, w in enumerate(words):
        if i:
            g = rng.uniform(*long_pause_s) if rng.random() < long_pause_p else rng.uniform(*gap_s)
            gap = np.zeros(int(g * SAMPLE_RATE), np.float32)
            pieces.append(gap)
            pos += len(gap)
        a = _render_cached(w, voice)
        pieces.append(a)
        spans.append((pos, pos + len(a)))
        pos += len(a)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return Utterance(audio.astype(np.float32), join_words(words, voice.is_cjk), list(words), spans, voice)


def random_words(rng: np.random.Generator, n: int, cjk: bool) -> list[str]:
    vocab = CJK_DIGITS if cjk else EN_WORDS
    return [vocab[int(i)] for i in rng.integers(0, len(vocab), n)]


def random_voice(
    rng: np.random.Generator, heldout: bool = False, lang: str | None = None, extended: bool = False
) -> Voice:
    """A random voice from the training set of voices, or from the held-out set.

    ``extended`` adds ``EXTRA_TRAIN_VARIANTS`` to the training variants."""
    if lang is None:
        lang = "en"
    extra = EXTRA_TRAIN_VARIANTS if extended and not heldout else []
    if lang in ("cmn", "yue"):
        variants = ["", "m3", "f2", "whisper", *extra] if not heldout else ["m7", "f4"]
        base = lang
    else:
        base = str(rng.choice(HELDOUT_EN_BASES if heldout else TRAIN_EN_BASES))
        variants = HELDOUT_VARIANTS if heldout else TRAIN_VARIANTS + extra
    variant = str(rng.choice(variants))
    return Voice(base, variant, int(rng.integers(120, 200)), int(rng.integers(25, 75)))


def write_wav(path: str | os.PathLike[str], audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    sf.write(str(path), np.clip(audio, -1, 1), rate, subtype="PCM_16")


HELDOUT_KINDS = ("plain", "whisper", "quiet", "multiwindow", "cjk", "empty")


def demo_heldout_set(
    seed: int = 2024, voices: list[Voice | None] | None = None
) -> list[tuple[str, np.ndarray, str]]:
    """The demo model's held-out test set: ``(kind, audio, reference)`` from voices never trained on.

    Kinds: plain (-35..-20 dBFS, light noise), whisper (``whisperf``), quiet (-40 dBFS),
    multiwindow (14-22 words), cjk (Mandarin and Cantonese digits), empty (silence or noise alone).
    ``voices``, when given, gets each item's voice appended (``None`` for the empty ones).
    """
    rng = np.random.default_rng(seed)
    items: list[tuple[str, np.ndarray, str]] = []
    speakers: list[Voice | None] = []

    def utt(n_words: int, level: float, whisper: bool = False, lang: str = "en") -> tuple[np.ndarray, str]:
        voice = random_voice(rng, heldout=True, lang=lang)
        if whisper:
            voice = Voice(voice.lang, "whisperf", voice.speed, voice.pitch)
        speakers.append(voice)
        u = word_utterance(random_words(rng, n_words, lang != "en"), voice, rng)
        a = set_level(u.audio, level)
        a = add_noise(a, level, float(rng.uniform(20, 35)), str(rng.choice(["white", "pink"])), rng)
        pad = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
        return np.concatenate([pad, a, pad]), u.text

    for _ in range(16):
        items.append(("plain", *utt(int(rng.integers(2, 8)), float(rng.uniform(-35, -20)))))
    for _ in range(8):
        items.append(("whisper", *utt(int(rng.integers(2, 6)), float(rng.uniform(-40, -25)), whisper=True)))
    for _ in range(8):
        items.append(("quiet", *utt(int(rng.integers(2, 7)), -40.0)))
    for _ in range(6):
        items.append(("multiwindow", *utt(int(rng.integers(14, 22)), float(rng.uniform(-35, -22)))))
    for lang in ("cmn", "yue"):
        for _ in range(3):
            items.append(("cjk", *utt(int(rng.integers(3, 7)), -26.0, lang=lang)))
    for kind in ("white", "pink", "brown"):
        for level in (-60.0, -45.0):
            items.append(("empty", noise(kind, 3 * SAMPLE_RATE, rng) * 10 ** (level / 20), ""))
            speakers.append(None)
    items.append(("empty", np.zeros(2 * SAMPLE_RATE, np.float32), ""))
    speakers.append(None)
    if voices is not None:
        voices += speakers
    return items
