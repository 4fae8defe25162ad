"""Non-stationary non-speech, synthesised: music, typing, clicks, traffic, wind, doors, dishes,
a fan changing speed, babble at a distance. For the VAD benchmark
(glmasr_live.devtools.movingbench) and the segmenter tests.

Every generator takes (seconds, rng) and returns unit-RMS float32 audio at 16 kHz; scale it with
``synth.set_level``. Nothing here is speech-like by construction: no formants that move at the
syllable rate, no voice. Music is plucked strings (Karplus-Strong), a sustained pad, a
bass-and-drums groove and piano-like arpeggios. The one exception is babble: six espeak-ng
talkers at once, far off (reverberant, muffled): speech, but no one's to caption (it needs
espeak-ng; with two or three talkers it is speech a VAD should hear, docs/segmenter.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE as SR

Generator = Callable[[float, np.random.Generator], np.ndarray]
_CHORDS = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (2, 5, 9), (4, 7, 11))  # semitones


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-12)).astype(np.float32)


def _pluck(freq: float, seconds: float, rng: np.random.Generator, decay: float = 0.996) -> np.ndarray:
    """A Karplus-Strong plucked string: a noise burst circulating in a damped delay line."""
    n, period = int(seconds * SR), max(2, int(round(SR / freq)))
    buf = rng.uniform(-1, 1, period)
    reps = -(-n // period)
    out = np.empty(reps * period)
    for r in range(reps):  # one period at a time: a two-tap average, damped
        out[r * period : (r + 1) * period] = buf
        buf = decay * 0.5 * (buf + np.roll(buf, -1))
    return out[:n]


def _note(semitone: float, base: float = 196.0) -> float:
    return base * 2 ** (semitone / 12)


def _place(out: np.ndarray, sound: np.ndarray, at: int, gain: float = 1.0) -> None:
    end = min(len(out), at + len(sound))
    if end > at:
        out[at:end] += gain * sound[: end - at]


def music_pluck(seconds: float, rng: np.random.Generator, step_s: float = 0.5) -> np.ndarray:
    """Plucked chords (guitar-like) changing every ``step_s``."""
    out = np.zeros(int(seconds * SR))
    for k, at in enumerate(range(0, len(out), int(step_s * SR))):
        chord = _CHORDS[(k + int(rng.integers(0, 6))) % len(_CHORDS)]
        for j, semi in enumerate(chord):
            strum = at + j * int(rng.uniform(0.005, 0.02) * SR)
            _place(out, _pluck(_note(semi), 1.5, rng), strum, rng.uniform(0.6, 1.0))
    return _unit(out)


def music_arpeggio(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Piano-like notes (harmonics with exponential decay), one every 0.12-0.25 s."""
    out, at, t = np.zeros(int(seconds * SR)), 0, np.arange(int(0.8 * SR)) / SR
    while at < len(out):
        f = _note(float(rng.choice([0, 2, 4, 7, 9, 12, 14, 16, 19])), 261.6)
        tone = sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in range(1, 6))
        _place(out, tone * np.exp(-t * rng.uniform(4, 8)), at)
        at += int(rng.uniform(0.12, 0.25) * SR)
    return _unit(out)


def music_pad(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Sustained synth chords (detuned saws, slow attack), changing every 2 s, with vibrato."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    step = 2 * SR
    for k, at in enumerate(range(0, n, step)):
        seg = slice(at, min(n, at + step))
        chord = _CHORDS[(k * 2 + int(rng.integers(0, 6))) % len(_CHORDS)]
        tt = t[seg] - at / SR
        env = np.minimum(1.0, tt / 0.3) * np.minimum(1.0, (2.0 - tt) / 0.2)
        for semi in chord:
            f = _note(semi, 130.8) * (1 + 0.004 * np.sin(2 * np.pi * 5 * tt))
            for det in (0.997, 1.003):
                out[seg] += env * (2 * ((f * det * tt) % 1.0) - 1) * 0.3
    return _unit(_lowpass(out, 6))


def music_groove(seconds: float, rng: np.random.Generator, bpm: float = 110.0) -> np.ndarray:
    """Kick, snare, hi-hat and a plucked bass line at ``bpm``."""
    out, beat = np.zeros(int(seconds * SR)), 60.0 / bpm
    t = np.arange(int(0.3 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(len(t)) * np.exp(-t * 25) * 0.6
    hat = np.diff(rng.standard_normal(int(0.05 * SR)), prepend=0) * np.exp(-np.arange(int(0.05 * SR)) / 200)
    for k in range(int(seconds / beat * 2)):
        at = int(k * beat / 2 * SR)
        _place(out, hat, at, 0.25)
        if k % 2 == 0:
            _place(out, kick if k % 4 == 0 else snare, at)
            _place(out, _pluck(_note(float(rng.choice([0, 5, 7, 3])), 55.0), 0.5, rng), at, 0.8)
    return _unit(out)


def _lowpass(x: np.ndarray, width: int) -> np.ndarray:
    """A moving-average low-pass over ``width`` samples (first null at 16000/width Hz)."""
    return np.convolve(x, np.ones(width) / width, mode="same")


def typing(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Key clicks: bursts of words (3-8 keys, 80-250 ms apart) with pauses, press and release."""
    out, at = np.zeros(int(seconds * SR)), int(rng.uniform(0.1, 0.5) * SR)
    m = int(0.012 * SR)
    env = np.exp(-np.arange(m) / (0.002 * SR))
    while at < len(out):
        for _ in range(int(rng.integers(3, 9))):
            click = np.diff(rng.standard_normal(m), prepend=0) * env
            _place(out, click, at, rng.uniform(0.5, 1.0))
            _place(out, click[::-1] * env, at + int(rng.uniform(0.05, 0.09) * SR), rng.uniform(0.2, 0.4))
            at += int(rng.uniform(0.08, 0.25) * SR)
        at += int(rng.uniform(0.2, 0.8) * SR)
    return _unit(out + 0.01 * rng.standard_normal(len(out)))


def clicks(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A click train (a clock, a metronome, tapping): taps every 0.15-0.5 s, slowly changing."""
    out = np.zeros(int(seconds * SR))
    m = int(0.02 * SR)
    tap = np.sin(2 * np.pi * 1800 * np.arange(m) / SR) * np.exp(-np.arange(m) / (0.003 * SR))
    at, period = 0, rng.uniform(0.15, 0.5)
    while at < len(out):
        _place(out, tap, at, rng.uniform(0.7, 1.0))
        period = float(np.clip(period * rng.uniform(0.9, 1.1), 0.15, 0.5))
        at += int(period * SR)
    return _unit(out + 0.01 * rng.standard_normal(len(out)))


def _swells(
    n: int,
    rng: np.random.Generator,
    every_s: tuple[float, float],
    width_s: tuple[float, float],
    depth_db: float,
) -> np.ndarray:
    """A gain envelope with Gaussian bumps up to ``depth_db`` (cars passing, gusts)."""
    t, env, at = np.arange(n) / SR, np.zeros(n), 0.0
    while at < n / SR:
        at += rng.uniform(*every_s)
        env += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((t - at) / rng.uniform(*width_s)) ** 2)
    return 10 ** (depth_db * np.minimum(env, 1.0) / 20)


def traffic(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Brown noise with cars passing: 15-25 dB swells of 1-3 s every 2-6 s."""
    n = int(seconds * SR)
    return _unit(synth.noise("brown", n, rng, fast=True) * _swells(n, rng, (2, 6), (0.5, 1.5), 20))


def wind(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Pink noise in gusts: 10-20 dB swells of 0.2-1 s."""
    n = int(seconds * SR)
    return _unit(synth.noise("pink", n, rng, fast=True) * _swells(n, rng, (0.5, 2), (0.1, 0.5), 15))


def doors(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Door slams (a low thump and a rattle) every 1.5-4 s over faint pink noise."""
    out, at = np.zeros(int(seconds * SR)), int(rng.uniform(0.3, 1.0) * SR)
    t = np.arange(int(0.4 * SR)) / SR
    while at < len(out):
        thump = np.sin(2 * np.pi * rng.uniform(50, 90) * t) * np.exp(-t * 15)
        rattle = rng.standard_normal(len(t)) * np.exp(-t * 30) * 0.5
        _place(out, thump + rattle, at)
        at += int(rng.uniform(1.5, 4.0) * SR)
    return _unit(out + 0.003 * synth.noise("pink", len(out), rng, fast=True))


def dishes(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Clinks of plates and cutlery: inharmonic partials ringing 0.1-0.4 s, 0.2-1 s apart."""
    out, at = np.zeros(int(seconds * SR)), 0
    t = np.arange(int(0.5 * SR)) / SR
    while at < len(out):
        f0 = rng.uniform(1500, 4500)
        ring = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1.0, 2.76, 5.4)) * np.exp(-t * rng.uniform(8, 30))
        _place(out, ring, at, rng.uniform(0.3, 1.0))
        at += int(rng.uniform(0.2, 1.0) * SR)
    return _unit(out + 0.01 * rng.standard_normal(len(out)))


def fan_sweep(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A fan changing speed: blade tone and harmonics (60-180 Hz) plus airflow noise that grows
    with speed, swept up and down over ~8 s."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    speed = 1.0 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(6, 10) + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(120.0 * speed) / SR
    tone = sum(np.sin(h * phase) / h for h in range(1, 5))
    air = synth.noise("pink", n, rng, fast=True) * speed**2
    return _unit(0.5 * tone + air)


_BABBLE_WORDS = ("hello please start one two three open blue seven four nine zero stop go left "
                 "right green red up down next back eight six five yes thank you close").split()  # fmt: skip
_BABBLE_VOICES = (("en-us", "m3"), ("en-gb-x-rp", "f2"), ("en", "m1"), ("en-us", "f4"),
                  ("en-gb-scotland", "m2"), ("en", "f3"))  # fmt: skip


def _talker(voice: synth.Voice, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one voice talking on and on, starting at a random point."""
    parts, have = [], 0
    while have < n + SR:
        words = [str(w) for w in rng.choice(_BABBLE_WORDS, 6)]
        parts.append(synth.word_utterance(words, voice, rng, long_pause_p=0.0).audio)
        have += len(parts[-1])
    start = int(rng.integers(0, SR))
    return _unit(np.concatenate(parts)[start : start + n])


def babble(seconds: float, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """``talkers`` voices at once, far off: in a room with a 0.5 s reverberant tail and muffled
    (the high frequencies fall away over distance: a low-pass at ~2.5 kHz)."""
    n = int(seconds * SR)
    x = sum(_talker(synth.Voice(*_BABBLE_VOICES[i % len(_BABBLE_VOICES)]), n, rng) for i in range(talkers))
    tail = np.arange(SR // 2)
    room = rng.standard_normal(len(tail)) * np.exp(-tail / (0.08 * SR))
    room[0] = 3.0  # the direct sound
    size = 1 << int(np.ceil(np.log2(n + len(room))))
    freqs = np.fft.rfftfreq(size, 1 / SR)
    spectrum = np.fft.rfft(x, size) * np.fft.rfft(room, size) / (1 + (freqs / 2500.0) ** 4)
    return _unit(np.fft.irfft(spectrum, size)[:n])


KINDS: dict[str, Generator] = {
    "music-pluck": music_pluck,
    "music-arpeggio": music_arpeggio,
    "music-pad": music_pad,
    "music-groove": music_groove,
    "typing": typing,
    "clicks": clicks,
    "traffic": traffic,
    "wind": wind,
    "doors": doors,
    "dishes": dishes,
    "fan-sweep": fan_sweep,
    "babble": babble,
}
"""Every kind of moving non-speech, by name."""

MUSIC = tuple(k for k in KINDS if k.startswith("music"))


def make(kind: str, seconds: float, level_dbfs: float, seed: int) -> np.ndarray:
    """``seconds`` of ``kind`` at ``level_dbfs`` RMS, with a faint hiss (-80 dBFS) under it."""
    rng = np.random.default_rng(seed)
    x = synth.set_level(KINDS[kind](seconds, rng), level_dbfs)
    return np.clip(x + 1e-4 * rng.standard_normal(len(x)), -1.0, 1.0).astype(np.float32)
