"""Per-frame features for the segmenter: mean band SNR over a tracked noise floor, in-band
level, the gain that brings speech to webrtcvad's working level, webrtcvad's vote and the learned
model's (silero-vad, glmasr_live.audio.speechprob) speech probability on the same gained frames.

The noise floor is tracked per spectral band by minimum statistics (the lowest smoothed band
power of the last ``noise_window_s``); all-zero frames (digital silence) leave it alone.
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
import webrtcvad

from glmasr_live.audio import speechprob
from glmasr_live.audio.segmenter_settings import SegmenterSettings
from glmasr_live.events import SAMPLE_RATE

_FFT_SIZE = 512
# Band edges in Hz: narrow where voiced energy is, wider up high where whispers and fricatives
# live. Below 100 Hz is rumble and hum, never needed to tell speech.
_BAND_EDGES_HZ = (100, 250, 400, 550, 700, 900, 1100, 1400, 1700, 2000, 2500, 3000, 3600, 4300, 5000,
                  6000, 7000, 7900)  # fmt: skip
_MAX_BAND_SNR_DB = 40.0  # one very loud band must not outvote all the others
# Whisper-like frames (the route around the learned test, see _whisper_like): noise-excited but
# shaped by formants. Measured on the benchmark's whispers vs moving non-speech (docs/segmenter.md).
_FLAT_BINS = slice(4, 200)  # 125-6250 Hz: where a whisper's formants and fricatives are
_FLAT_RANGE = (0.02, 0.3)  # whispers 0.03-0.27; tonal music, dishes < 0.01; wind, typing > 0.3
_MIN_CONTRAST_DB = 4.0  # std over bands of the SNR: formants vs a gust's even rise (~2 dB)
_MAX_IMPULSE = 3.0  # loudest 5 ms over the frame's mean: key clicks ~3.5, whispers ~1.5
# A whisper's level rises and falls from frame to frame (syllables; half its whisper-like frames
# rise); the whisper-like frames of a drum groove only decay (snare and bass ringing out: -2 to
# -0.2 dB per frame). So a window of whisper-like frames must hold at least one that rose this much.
_RISE_DB = 1.0
_MIN_RISES = 2
_ABS_FLOOR_DBFS = -100.0  # ~16-bit quantisation noise: finer detail than int16 is not evidence
DIGITAL_SILENCE_DB = -200.0  # the level the analyser gives an all-zero frame
log = logging.getLogger(__name__)
_warned = False


def _listeners(s: SegmenterSettings) -> speechprob.Listeners | None:
    global _warned
    if not (s.learned or s.doubt or s.confirm):
        return None
    reason = speechprob.unavailable_reason()
    if reason is None:
        return speechprob.Listeners()
    if (s.learned or s.confirm) and not _warned:  # the gate's second opinion just stands aside
        log.warning(
            "the segmenter runs without its learned speech test (music, typing may open it): %s", reason
        )
        _warned = True
    return None


def _whisper_like(frame: np.ndarray, spectrum: np.ndarray, band_snr: np.ndarray) -> bool:
    """Noise-like but formant-shaped and steady within the frame: what a whisper is and what
    tonal music (too peaky), gusts and fans (an even rise over every band), typing and door
    rattles (too flat, or the energy in one 5 ms burst) are not."""
    power = spectrum.real[_FLAT_BINS] ** 2 + spectrum.imag[_FLAT_BINS] ** 2 + 1e-30
    flatness = math.exp(float(np.mean(np.log(power)))) / float(np.mean(power))
    if not _FLAT_RANGE[0] <= flatness <= _FLAT_RANGE[1] or float(np.std(band_snr)) < _MIN_CONTRAST_DB:
        return False
    sub = np.einsum("ij,ij->i", parts := frame.reshape(6, -1), parts)
    return float(sub.max()) <= _MAX_IMPULSE * float(sub.mean()) + 1e-30


class FrameAnalyser:
    """Per-frame features: band SNR over the tracked floor, levels, gain and webrtcvad's vote."""

    def __init__(self, s: SegmenterSettings) -> None:
        self._s = s
        n = s.frame_samples
        self._window = np.hanning(n).astype(np.float64)
        freqs = np.fft.rfftfreq(_FFT_SIZE, 1 / SAMPLE_RATE)
        band = np.searchsorted(_BAND_EDGES_HZ, freqs, side="right") - 1
        inside = (freqs >= _BAND_EDGES_HZ[0]) & (freqs < _BAND_EDGES_HZ[-1])
        members = np.zeros((len(_BAND_EDGES_HZ) - 1, freqs.size))
        for k in range(members.shape[0]):
            members[k, inside & (band == k)] = 1.0
        self._bins = members.sum(axis=1)
        self._mean = members / self._bins[:, None]  # band power = mean power per bin
        # Mean-square of the frame from the power of its one-sided spectrum (Parseval, Hann).
        self._ms_scale = 2.0 / (_FFT_SIZE * float(np.sum(self._window**2)))
        abs_floor_bin = 10 ** (_ABS_FLOOR_DBFS / 10) / self._ms_scale / (freqs.size - 1)
        self._abs_floor = np.full(members.shape[0], abs_floor_bin)
        self._history = np.zeros((s.frames(s.noise_window_s), members.shape[0]))
        self._filled = 0
        self._valid = 0  # how many of the latest history rows the floor is taken from
        self._recent_db = np.zeros((s.frames(s.stationary_s), members.shape[0]))
        self._smoothed: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._vad = webrtcvad.Vad(s.webrtc_mode)
        self._learned = _listeners(s)
        self._over = False  # whether the frame being analysed is over the floor
        memory = max(1, round(s.learned_memory_s * SAMPLE_RATE / speechprob.CHUNK))
        self._probs: deque[float] = deque(maxlen=memory)
        self._heard: deque[bool] = deque(maxlen=memory)  # chunks over the confirmation's bar
        self._whispers: deque[bool] = deque(maxlen=s.frames(s.whisper_window_s))
        self._rises: deque[bool] = deque(maxlen=s.frames(s.whisper_window_s))
        self._last_level = DIGITAL_SILENCE_DB
        self.floor = self._abs_floor.copy()
        self.speech_level_db = -200.0  # none heard yet: the gain follows the floor meanwhile
        self.gain_db = 0.0

    def reset_continuity(self) -> None:
        """After a gap: the next frame does not follow the previous one."""
        self._previous = None
        if self._learned is not None:
            self._learned.reset()
            self._probs.clear()
            self._heard.clear()
        self._whispers.clear()
        self._rises.clear()

    @property
    def learned_prob(self) -> float | None:
        """The learned model's highest speech probability over the memory (None: not in use)."""
        if self._learned is None:
            return None
        return max(self._probs, default=0.0)

    @property
    def learned_heard(self) -> bool:
        """Whether the learned model heard speech within its memory: a chunk reached
        ``sure_prob`` (``sure_prob_startup`` in its first second after the start or a gap)."""
        return any(self._heard)

    @property
    def whisper_like(self) -> bool:
        """Whether the last frame was whisper-like (False when the learned model is not loaded)."""
        return bool(self._whispers and self._whispers[-1])

    @property
    def learned_ok(self) -> bool:
        """Whether the learned model (when in use) heard speech within its memory, or, where it
        is deaf (whispers), the frames of the last ``whisper_window_s`` were mostly whisper-like."""
        prob = self.learned_prob
        if not self._s.learned or prob is None or prob >= self._s.learned_threshold:
            return True
        return self._s.whisper_route and self.whispering

    @property
    def whispering(self) -> bool:
        """The whisper route's test: ``whisper_share`` of the last ``whisper_window_s`` were
        whisper-like, with at least two rises (syllables). On the moving-sound benchmark it
        never fires on non-speech; on 95 % of whispered utterances it fires for 4+ frames."""
        # A share of the whole window, not of the frames seen: a gap's restart opens nothing.
        need = self._s.whisper_share * self._s.frames(self._s.whisper_window_s)
        return sum(self._whispers) >= need and sum(self._rises) >= _MIN_RISES

    def _listen(self, gained: np.ndarray, recorded: np.ndarray) -> None:
        if self._learned is not None:
            probs = self._learned.feed(gained, recorded, self._over)
            if not self._learned.awake:
                self._probs.clear()  # asleep: nothing over the floor to hear for a second
                self._heard.clear()
            self._probs.extend(probs)
            bar = self._s.sure_prob if self._learned.settled else self._s.sure_prob_startup
            self._heard.extend(p >= bar for p in probs)

    def band_db(self, power: np.ndarray) -> float:
        """In-band (100-7900 Hz) level in dBFS of band powers ``power``."""
        ms = float(np.dot(power, self._bins)) * self._ms_scale
        return 10 * math.log10(max(ms, 1e-20))

    def analyse(self, frame: np.ndarray) -> tuple[float, float, bool]:
        """(mean band SNR dB, in-band level dBFS, webrtcvad's vote) of one frame."""
        if not frame.any():
            # Digital silence (a muted source, a gap's zeros) says nothing about the noise:
            # leave the floor where the real noise put it.
            self._previous = np.zeros_like(self.floor)
            silence = np.zeros(len(frame), np.float32)
            self._over = False
            self._listen(silence, silence)
            return 0.0, DIGITAL_SILENCE_DB, False
        spectrum = np.fft.rfft(frame * self._window, _FFT_SIZE)
        power = self._mean @ (spectrum.real**2 + spectrum.imag**2)
        self._track_floor(power)
        # Two frames (60 ms) against the floor: halves the chi-square scatter of noise frames.
        both = power if self._previous is None else 0.5 * (power + self._previous)
        self._previous = power
        snr = 10 * np.log10(np.maximum(both, 1e-30) / self.floor)
        snr_db = float(np.mean(np.clip(snr, 0.0, _MAX_BAND_SNR_DB)))
        level_db = self.band_db(power)
        over = self._over = snr_db >= self._s.snr_threshold_db
        if over:
            self._track_speech_level(level_db)
        if self._learned is not None:
            whisper = over and _whisper_like(frame, spectrum, np.clip(snr, 0.0, _MAX_BAND_SNR_DB))
            self._whispers.append(whisper)
            self._rises.append(whisper and level_db >= self._last_level + _RISE_DB)
        self._last_level = level_db
        self._update_gain()
        return snr_db, level_db, self._vote(frame)

    def _track_floor(self, power: np.ndarray) -> None:
        a = self._s.floor_smoothing
        self._smoothed = power.copy() if self._smoothed is None else a * self._smoothed + (1 - a) * power
        size, short = len(self._history), len(self._recent_db)
        self._history[self._filled % size] = self._smoothed
        self._recent_db[self._filled % short] = 10 * np.log10(np.maximum(power, 1e-30))
        self._filled += 1
        self._valid = min(self._valid + 1, size)
        if self._filled >= short and self._stationary():
            self._valid = min(self._valid, short)  # forget the floor from before the noise rose
        rows = np.arange(self._filled - self._valid, self._filled) % size
        self.floor = np.maximum(self._history[rows].min(axis=0), self._abs_floor)

    def _stationary(self) -> bool:
        spread = float(np.mean(np.std(self._recent_db, axis=0)))
        return spread < self._s.stationary_db

    def _track_speech_level(self, level_db: float) -> None:
        # Fast attack, slow release (per 30 ms frame): the gain settles within a word and does
        # not pump on the syllables.
        if level_db > self.speech_level_db:
            self.speech_level_db += 0.5 * (level_db - self.speech_level_db)
        else:
            self.speech_level_db += 0.02 * (level_db - self.speech_level_db)

    def _update_gain(self) -> None:
        s = self._s
        floor_db = self.band_db(self.floor)
        # Before any speech, assume it will come ~20 dB over the floor.
        level = self.speech_level_db if self.speech_level_db > -200.0 else floor_db + 20.0
        gain = s.target_dbfs - level
        gain = min(gain, s.target_dbfs - s.min_gain_margin_db - floor_db)
        self.gain_db = float(min(max(gain, s.min_gain_db), s.max_gain_db))

    def _vote(self, frame: np.ndarray) -> bool:
        gained = np.clip(frame * (10 ** (self.gain_db / 20)), -1.0, 1.0)
        self._listen(gained.astype(np.float32), frame.astype(np.float32))
        pcm = (gained * 32767.0).astype(np.int16)
        return bool(self._vad.is_speech(pcm.tobytes(), SAMPLE_RATE))
