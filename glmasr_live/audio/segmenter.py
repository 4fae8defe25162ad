"""The segmenter: 16 kHz audio in, speech-start / speech-end records (absolute sample indices) out.

webrtcvad alone either misses whispered and very quiet speech (aggressive modes) or fires on
noise (mode 0). So each 30 ms frame is judged twice and must pass both:

1. *Over the floor*: a noise floor is tracked per spectral band (minimum statistics: the lowest
   smoothed band power of the last ~2 s) and the frame's mean band SNR in dB must exceed a
   threshold. Stationary noise of any colour sits on its own floor (mean band SNR ~1.3 dB),
   whereas speech, voiced or whispered, rises and falls at the syllable rate and climbs well
   above it. This is the temporal-modulation test: it does not ask whether a frame *looks*
   voiced, so whispers (noise-like by spectrum) pass.
2. *webrtcvad* on the frame after a gain that brings the speech level to where webrtcvad works
   (~-26 dBFS): it vetoes non-speech-like energy that the floor test lets through.

The per-frame features for both come from :class:`~glmasr_live.audio.frames.FrameAnalyser`.

Then the state machine (this module): an utterance opens once ``min_speech_s`` of speech frames
has come with no pause as long as the hangover, starts ``pre_roll_s`` before its first speech
frame, closes after ``hangover_s`` of non-speech (``endpoint_s`` when the pause is clearly
silent) and ends ``post_roll_s`` after its last speech frame.
Over-long speech is split at the quietest point of the last ``split_search_s``.

Pure: no threads, no I/O, no clock. Every frame is computed the same way whatever the block
sizes fed, so records do not depend on how the audio was chunked.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from glmasr_live.audio.frames import DIGITAL_SILENCE_DB, FrameAnalyser
from glmasr_live.events import SAMPLE_RATE, SpeechEnd, SpeechStart
from glmasr_live.option_table import ENDPOINT_S, HANGOVER_S


@dataclass(frozen=True, slots=True)
class SegmenterSettings:
    """How the segmenter decides what is speech. All times in seconds of stream audio.

    Fields:
        sensitivity: 0..1, the one knob for users (``--vad-sensitivity``). Higher catches
            fainter speech and fires more easily; it sets ``snr_threshold_db`` and
            ``webrtc_mode``. 0.5 meets the benchmark targets (docs/segmenter.md).
        frame_ms: analysis frame in ms; webrtcvad accepts 10, 20 or 30.
        pre_roll_s: audio kept before the first speech frame, so onsets (a soft consonant,
            a breathy whisper onset) are never clipped.
        post_roll_s: audio kept after the last speech frame (the fading end of a word).
        hangover_s: non-speech that must pass before an utterance closes; shorter pauses stay
            inside it. Keep it below the pause between sentences you want as separate captions.
        endpoint_s: a pause this long whose every frame is clearly silent (mean band SNR at
            least ``clear_margin_db`` under the speech threshold; on a noise-gated source, with
            digital silence in the last ``noise_window_s``, webrtcvad must hear no speech too)
            closes the utterance without
            waiting for the whole hangover, so the final comes ~0.25 s after the last word.
            Pauses with faint, ambiguous frames (a whisper fading, breath, a dropout inside a
            whispered word) still wait ``hangover_s``. 0 turns it off.
        clear_margin_db: how far under the threshold a frame must be to count as clear silence.
        min_speech_s: speech-frame time needed before an utterance opens; shorter blips
            (clicks, a cough's onset) never open one. Costs that much latency at each onset.
        max_utterance_s: a longer run of speech is split (the decoder closes its blocks at
            pauses, so a forced split is a last resort; 30 s matches one encoder window).
        split_search_s: the forced split goes to the quietest point of these last seconds.
        split_dip_s: a split point must be quiet over this width (a pause between words,
            not the closure of a stop consonant inside one).
        noise_window_s: the noise floor is the minimum of the smoothed band power over this
            window: longer follows rising noise more slowly, shorter may creep up on speech
            without pauses.
        stationary_s: a stretch of this length whose band levels hardly vary (see
            ``stationary_db``) is noise even when it sits above the floor: the floor restarts
            from it. Follows rising noise (a fan spinning up, an input AGC ramping in silence)
            within this time instead of ``noise_window_s``.
        stationary_db: the most that band levels (dB, std over ``stationary_s``, mean over
            bands) vary in such a stretch. Stationary noise gives ~1.8, at most ~2.1; any stretch
            mostly of speech, even a whisper at 10 dB SNR, more than 2.9.
        floor_smoothing: per-frame weight of the past in the band-power smoothing that feeds
            the floor tracker (0.7 = ~90 ms time constant): lowers the minimum's bias.
        target_dbfs: level (RMS of speech frames) the gain aims at before webrtcvad.
        max_gain_db: most gain applied (a -60 dBFS whisper needs ~34 dB).
        min_gain_db: least gain (loud speech is turned down to the target, at most this much).
        min_gain_margin_db: the gained noise floor stays at least this far below the target.
        learned: a third test, a learned one: silero-vad's ONNX model (onnxruntime) hears the
            gained frames and its speech probability must reach ``learned_threshold`` within
            the last ``learned_memory_s``. Music, typing, traffic and other sound that moves
            pass the first two tests; this one tells them from speech, but the model misses
            some whispers (recall drops below the targets), so it is off by default
            (``--vad-model silero``). Needs the ``vad`` extra (onnxruntime, silero-vad); without it
            the test is skipped with a warning.
        learned_memory_s: how far back the probability may have reached the threshold (the
            model dips between syllables, and whole words, of faint or whispered speech).
        learned_lookback_s: when the model confirms speech late (a whisper), the utterance
            starts at the run of frames that passed the other two tests, up to this far back
            (then the pre-roll): no clipped first word.
    """

    sensitivity: float = 0.5
    frame_ms: int = 30
    pre_roll_s: float = 0.3
    post_roll_s: float = 0.3
    hangover_s: float = HANGOVER_S
    endpoint_s: float = ENDPOINT_S
    clear_margin_db: float = 2.0
    min_speech_s: float = 0.15
    max_utterance_s: float = 30.0
    split_search_s: float = 5.0
    split_dip_s: float = 0.09
    noise_window_s: float = 2.0
    stationary_s: float = 0.48
    stationary_db: float = 2.4
    floor_smoothing: float = 0.7
    target_dbfs: float = -26.0
    max_gain_db: float = 40.0
    min_gain_db: float = -12.0
    min_gain_margin_db: float = 6.0
    learned: bool = False
    learned_memory_s: float = 0.5
    learned_lookback_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sensitivity <= 1.0:
            raise ValueError(f"sensitivity must be within 0..1, got {self.sensitivity}")
        if self.frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30 (webrtcvad), got {self.frame_ms}")
        if not 0.0 <= self.endpoint_s <= self.hangover_s:
            raise ValueError(f"endpoint must be within 0..{self.hangover_s} s, got {self.endpoint_s}")
        if self.max_utterance_s <= self.split_search_s:
            raise ValueError("max_utterance_s must be longer than split_search_s")

    @classmethod
    def from_sensitivity(
        cls, sensitivity: float, endpoint_s: float | None = None, vad_model: str = "none"
    ) -> SegmenterSettings:
        """Defaults with the user's knobs set: sensitivity (0 = only clear speech, 1 = the
        faintest), when given the endpoint (``--endpoint``; 0 = always the full hangover), and
        ``--vad-model`` (``silero`` turns the learned test on)."""
        learned = vad_model == "silero"
        if learned:
            from glmasr_live.audio import speechprob
            from glmasr_live.errors import ConfigError

            reason = speechprob.unavailable_reason()
            if reason is not None:  # asked for by name: an error, not a silent fallback
                raise ConfigError(f"--vad-model silero: {reason}, or pip install 'glmasr-live[vad]'")
        if endpoint_s is None:
            return cls(sensitivity=float(sensitivity), learned=learned)
        return cls(sensitivity=float(sensitivity), endpoint_s=float(endpoint_s), learned=learned)

    @property
    def snr_threshold_db(self) -> float:
        """Mean band SNR (dB over the noise floor) a frame needs: 5.5 dB at 0, 2.5 dB at 1.

        Stationary noise gives ~1.5 dB on average and under 2.7 dB in 99.9 % of frames.
        """
        return 5.5 - 3.0 * self.sensitivity

    @property
    def webrtc_mode(self) -> int:
        """webrtcvad aggressiveness: 3 at sensitivity 0 down to 0 at 1."""
        return 3 - min(3, int(self.sensitivity * 4))

    @property
    def learned_threshold(self) -> float:
        """Speech probability the learned model must give: 0.45 at sensitivity 0, 0.3 at 0.5,
        0.15 at 1 (chosen on the moving-sound benchmark, docs/segmenter.md: at 0.5 s memory,
        0.3 keeps music and typing under 2 % but for arpeggios; 0.1-0.15 lets 9-40 % through).
        """
        return 0.45 - 0.3 * self.sensitivity

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000

    def samples(self, seconds: float) -> int:
        return int(round(seconds * SAMPLE_RATE))

    def frames(self, seconds: float) -> int:
        """Whole frames covering ``seconds`` (at least 1)."""
        return max(1, math.ceil(seconds * 1000 / self.frame_ms - 1e-9))


_IDLE, _CANDIDATE, _SPEECH = "idle", "candidate", "speech"
SegmentRecords = list[SpeechStart | SpeechEnd]


class Segmenter:
    """Feed 16 kHz mono audio in blocks of any size; get ``SpeechStart``/``SpeechEnd`` records.

    Sample indices are absolute: the first sample fed has index ``start_sample``. A
    ``SpeechStart`` points ``pre_roll_s`` before the utterance's first speech frame, into audio
    already fed: ``min_speech_s`` plus the pre-roll back for clear speech, a second or two more
    when faint speech is confirmed only after some syllables (keep 5 s in the ring buffer).
    A ``SpeechEnd`` comes ``hangover_s`` after the last speech frame (``endpoint_s`` when the
    pause is clearly silent) and points ``post_roll_s``
    after it. Utterance ids count up from 0. Not thread-safe: one thread feeds it.
    """

    def __init__(self, settings: SegmenterSettings | None = None, start_sample: int = 0) -> None:
        self.settings = settings or SegmenterSettings()
        s = self.settings
        self._an = FrameAnalyser(s)
        self._frame = s.frame_samples
        self._threshold = s.snr_threshold_db
        self._hangover = s.samples(s.hangover_s)
        self._endpoint = s.samples(s.endpoint_s) if s.endpoint_s > 0 else self._hangover
        self._clear_db = self._threshold - s.clear_margin_db
        self._clear_since = start_sample  # start of the current run of clearly silent frames
        self._gate_memory = s.samples(s.noise_window_s)
        self._digital_silence_at = start_sample - self._gate_memory  # last all-zero frame
        self._pre_roll = s.samples(s.pre_roll_s)
        self._post_roll = s.samples(s.post_roll_s)
        self._min_frames = s.frames(s.min_speech_s)
        self._max_len = s.samples(s.max_utterance_s)
        self._dip = s.frames(s.split_dip_s) // 2
        self._levels: deque[tuple[int, float]] = deque(maxlen=s.frames(s.split_search_s) + self._dip)
        self._ms: deque[float] = deque(maxlen=3)  # ~90 ms of frame mean-squares for level_dbfs
        self._pending = np.zeros(0, np.float32)
        self._pos = start_sample  # absolute index of the next sample fed
        self._frame_pos = start_sample  # absolute index of the first pending sample
        self._lower = start_sample  # no utterance may start before this (last end, a gap)
        self._state = _IDLE
        self._first_speech = 0  # candidate: start of its first speech frame
        self._heard_since = self._heard_end = start_sample - self._hangover - 1  # two-test run
        self._lookback = s.samples(s.learned_lookback_s)
        self._speech_frames = 0
        self._last_speech_end = 0
        self._utt_start = 0
        self._utt_id = 0

    # ------------------------------------------------------------------ read-only state (UI)

    @property
    def in_speech(self) -> bool:
        """True while an utterance is open (a ``SpeechStart`` without its ``SpeechEnd``)."""
        return self._state == _SPEECH

    @property
    def level_dbfs(self) -> float:
        """Input level, RMS of the last ~90 ms in dBFS (-120 before any audio)."""
        if not self._ms:
            return -120.0
        return 10 * math.log10(max(sum(self._ms) / len(self._ms), 1e-12))

    @property
    def gain_db(self) -> float:
        """Gain applied before webrtcvad (dB) so that quiet speech reaches its working level."""
        return self._an.gain_db

    @property
    def speech_prob(self) -> float | None:
        """The learned model's latest speech probability (None when it is not in use)."""
        return self._an.learned_prob

    @property
    def noise_floor_dbfs(self) -> float:
        """Tracked noise floor, 100-7900 Hz, in dBFS."""
        return self._an.band_db(self._an.floor)

    @property
    def position(self) -> int:
        """Absolute index of the next sample to be fed."""
        return self._pos

    # ------------------------------------------------------------------ input

    def feed(self, samples: np.ndarray) -> SegmentRecords:
        """Analyse a block of samples (float in -1..1, or int16); return the records it completes."""
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / 32768.0
        self._pos += len(x)
        buf = np.concatenate([self._pending, x.astype(np.float32, copy=False)]) if len(self._pending) else x
        out: SegmentRecords = []
        n = self._frame
        whole = len(buf) // n
        for i in range(whole):
            out += self._process(np.asarray(buf[i * n : (i + 1) * n], np.float64))
        self._pending = np.array(buf[whole * n :], np.float32)
        return out

    def gap(self, sample: int, missing: int) -> SegmentRecords:
        """Samples ``[sample - missing, sample)`` were lost (an ``AudioGap`` record: ``sample`` is
        where real audio resumes). An open utterance ends at the gap; the next sample fed has
        index ``sample``. Feed only real audio up to the gap; zeros a ring buffer wrote for the
        lost samples may have been fed too (they are ignored). Returns the ``SpeechEnd``, if any.
        """
        if missing < 0 or sample < self._pos:
            raise ValueError(f"gap ending at {sample} (-{missing}) but {self._pos} samples already fed")
        at = min(self._pos, sample - missing)
        out = self._close(at, forced=False) if self._state == _SPEECH else []
        self._state = _IDLE
        self._pending = np.zeros(0, np.float32)
        self._pos = self._frame_pos = self._lower = sample
        self._levels.clear()
        self._an.reset_continuity()
        return out

    def flush(self) -> SegmentRecords:
        """End of stream: close an open utterance (a candidate shorter than min speech is dropped)."""
        out = self._close(self._pos, forced=False) if self._state == _SPEECH else []
        self._state = _IDLE
        return out

    # ------------------------------------------------------------------ per frame

    def _process(self, frame: np.ndarray) -> SegmentRecords:
        start = self._frame_pos
        end = self._frame_pos = start + self._frame
        self._ms.append(float(np.mean(frame * frame)))
        snr_db, level_db, vote = self._an.analyse(frame)
        self._levels.append((start, level_db))
        heard = vote and snr_db >= self._threshold  # the two tests before the learned one
        if heard and end - self._heard_end > self._hangover:
            self._heard_since = start
        if heard:
            self._heard_end = end
        speech = heard and self._an.learned_ok
        if level_db <= DIGITAL_SILENCE_DB:
            self._digital_silence_at = end
        # On a noise-gated source (digital silence between words) the floor is estimated from
        # the quietest speech, so the fading end of a word reads as clear: there webrtcvad must
        # hear no speech either. With real noise the floor is right and webrtcvad's own
        # hangover would only delay the endpoint.
        gated = end - self._digital_silence_at < self._gate_memory
        if snr_db >= self._clear_db or (vote and gated):
            self._clear_since = end
        out: SegmentRecords = []
        if speech:
            if self._state == _IDLE:
                first = max(self._heard_since, start - self._lookback)
                self._state, self._first_speech, self._speech_frames = _CANDIDATE, first, 0
            self._speech_frames += 1
            self._last_speech_end = end
        elif self._state != _IDLE and (
            end - self._last_speech_end >= self._hangover or end - self._clear_since >= self._endpoint
        ):
            if self._state == _SPEECH:
                out += self._close(end, forced=False)
            self._state = _IDLE
        if self._state == _CANDIDATE and self._speech_frames >= self._min_frames:
            self._state = _SPEECH
            self._utt_start = max(self._first_speech - self._pre_roll, self._lower)
            out.append(SpeechStart(self._utt_id, self._utt_start))
        if self._state == _SPEECH and end - self._utt_start >= self._max_len:
            out += self._split(end)
        return out

    def _close(self, now: int, forced: bool) -> SegmentRecords:
        """End the open utterance ``post_roll`` after its last speech frame (not after ``now``)."""
        end = max(min(self._last_speech_end + self._post_roll, now), self._utt_start + 1)
        record = SpeechEnd(self._utt_id, end, forced)
        self._utt_id += 1
        self._lower = end
        self._state = _IDLE
        return [record]

    def _split(self, now: int) -> SegmentRecords:
        """Split an over-long utterance at the quietest dip of the last ``split_search_s``."""
        cut = self._quietest_point()
        if cut >= self._last_speech_end:
            # Already in a pause: end here; the next speech opens a new utterance as usual.
            return self._close(now, forced=True)
        out: SegmentRecords = [SpeechEnd(self._utt_id, cut, True)]
        self._utt_id += 1
        self._utt_start = cut
        out.append(SpeechStart(self._utt_id, cut))
        return out

    def _quietest_point(self) -> int:
        starts = np.array([s for s, _ in self._levels])
        levels = np.array([v for _, v in self._levels])
        h = self._dip
        # A dip must be quiet over its whole width: score each frame by the loudest frame
        # within +-h (a pause between words beats a stop closure inside one).
        padded = np.pad(levels, h, mode="edge")
        width = np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1)
        score = width.max(axis=1)
        eligible = starts > self._utt_start
        order = np.lexsort((levels, score))
        best = next((int(i) for i in order if eligible[i]), len(starts) - 1)
        return int(starts[best]) + self._frame // 2


def find_segments(audio: np.ndarray, settings: SegmenterSettings | None = None) -> list[tuple[int, int]]:
    """Speech segments of a whole recording as (start, end) sample pairs (end exclusive)."""
    seg = Segmenter(settings)
    records = seg.feed(audio) + seg.flush()
    starts = {r.utterance: r.sample for r in records if isinstance(r, SpeechStart)}
    return [(starts[r.utterance], r.sample) for r in records if isinstance(r, SpeechEnd)]
