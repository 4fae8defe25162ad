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

Music, typing and dishes pass both tests for long stretches, so (``SegmenterSettings.confirm``,
the default) a run of such frames is only a *candidate* until the second opinion confirms it:
silero-vad's model (audio/speechprob.py) reaching ``sure_prob``, or the whisper route's test
for the whispers the model is deaf to. Unconfirmed candidates make no records; a confirmed one
is kept whole, split again when the second opinion has heard nothing for ``confirm_timeout_s``.

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

import numpy as np

from glmasr_live.audio.frames import DIGITAL_SILENCE_DB, FrameAnalyser
from glmasr_live.audio.segmenter_settings import SegmenterSettings
from glmasr_live.events import SpeechEnd, SpeechStart

_IDLE, _CANDIDATE, _SPEECH = "idle", "candidate", "speech"
SegmentRecords = list[SpeechStart | SpeechEnd]


class Segmenter:
    """Feed 16 kHz mono audio in blocks of any size; get ``SpeechStart``/``SpeechEnd`` records.

    Sample indices are absolute: the first sample fed has index ``start_sample``. A
    ``SpeechStart`` points ``pre_roll_s`` before the utterance's first speech frame, into audio
    already fed: ``min_speech_s`` plus the pre-roll back for clear speech, a second or two more
    when speech is confirmed only after some syllables (at most ``confirm_window_s +
    confirm_carry_s`` plus the pre-roll, 4.3 s by default: keep 5 s in the ring buffer).
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
        self._evidence = [0.0, 0, 0]  # this utterance: learned model's max, frames, whisper-like
        # Confirmation (the second opinion must hear speech before an utterance opens): the
        # evidence of the candidate's latest frames, (frame start, whether it heard speech).
        self._confirming = s.confirm and self._an.learned_prob is not None
        self._window: deque[tuple[int, bool]] = deque(maxlen=s.frames(s.confirm_window_s))
        self._carry = s.samples(s.confirm_carry_s)
        self._timeout = s.samples(s.confirm_timeout_s)
        self._evidence_at = start_sample  # end of the last frame the second opinion heard speech in
        self._dropped = (0, start_sample - 2 * self._carry - 1)  # last unconfirmed candidate's span
        self._reach = s.samples(s.confirm_window_s + s.confirm_carry_s)
        self._candidate_at = start_sample  # where the current candidate's first frame starts
        self._confirmed_until = start_sample - self._carry - 1  # last speech frame of an utterance

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
    def open_sure(self) -> bool | None:
        """How sure the segmenter is, so far, that the open (or candidate) utterance is speech:
        None when it cannot say (no second opinion), see ``SpeechEnd.sure``."""
        if self._an.learned_prob is None or not self.settings.doubt:
            return None
        best, frames, whispers = self._evidence
        return best >= self.settings.sure_prob or whispers >= self.settings.sure_whisper_share * max(
            frames, 1
        )

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
        out = self._end(min(self._pos, sample - missing))
        self._pending = np.zeros(0, np.float32)
        self._pos = self._frame_pos = self._lower = sample
        self._levels.clear()
        self._an.reset_continuity()
        return out

    def flush(self) -> SegmentRecords:
        """End of stream: close an open utterance; a candidate opens and closes at once if it is
        confirmed now, else (or when shorter than min speech) it is dropped."""
        return self._end(self._pos)

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
                self._candidate_at = start
                self._evidence = [0.0, 0, 0]
                self._window.clear()
            self._speech_frames += 1
            self._last_speech_end = end
        elif self._state != _IDLE and (
            end - self._last_speech_end >= self._hangover or end - self._clear_since >= self._endpoint
        ):
            out += self._end(end)
        if self._state != _IDLE:
            self._weigh(start)
        if self._state == _CANDIDATE and self._speech_frames >= self._min_frames and self._confirmed(False):
            out.append(self._open())
        if self._state == _SPEECH and end - self._utt_start >= self._max_len:
            out += self._split(end)
        elif self._state == _SPEECH and self._confirming and end - self._evidence_at >= self._timeout:
            # Confirmed once, then nothing the second opinion calls speech for a while (music
            # after the speech, or one note it took for speech): split where it went quiet.
            out += self._split(end, after=self._evidence_at + self._post_roll)
        return out

    def _weigh(self, start: int) -> None:
        """This frame's evidence for the utterance's ``sure`` and for its confirmation."""
        prob = self._an.learned_prob or 0.0
        ev = self._evidence
        ev[0] = max(ev[0], prob)
        ev[1] += 1
        ev[2] += self._an.whisper_like
        if not self._confirming:
            return
        heard = self._an.learned_heard or self._an.whispering
        if heard:
            self._evidence_at = start + self._frame
        if self._state == _CANDIDATE:
            self._window.append((start, heard))

    def _confirmed(self, closing: bool) -> bool:
        """Whether the second opinion heard speech in the candidate: in its latest
        ``confirm_window_s`` the learned model's probability reached ``sure_prob`` or the whisper
        route's test passed; at its end, ``sure_whisper_share`` of all its frames were
        whisper-like; or it follows confirmed speech within ``confirm_carry_s`` (a pause
        inside one speaker's sentence: the learned model hears loud whispers turned down to
        the target level faintly, and the second half of a sentence is not asked again)."""
        if not self._confirming or self._candidate_at - self._confirmed_until <= self._carry:
            return True
        if any(heard for _, heard in self._window):
            return True
        _, frames, whispers = self._evidence
        return closing and whispers >= self.settings.sure_whisper_share * max(frames, 1)

    def _open(self) -> SpeechStart:
        """The candidate becomes an utterance. One confirmed late (sound that moves before the
        speech, with no pause) starts at the window's oldest frame; one that follows an
        unconfirmed candidate within ``confirm_carry_s`` starts where that one did. Never more
        than ``confirm_window_s + confirm_carry_s`` plus the pre-roll back, so the audio is
        still in the policy's buffer (6 s)."""
        first = self._first_speech
        if self._confirming and len(self._window) == self._window.maxlen:
            first = max(first, self._window[0][0])
        if self._confirming and self._candidate_at - self._dropped[1] <= self._carry:
            # The first half of a sentence the model did not hear (loud music over it) is the
            # same speech as this confirmed half: the utterance takes it in, within reach.
            first = max(min(first, self._dropped[0]), self._frame_pos - self._reach)
        self._dropped = (0, self._dropped[1] - 2 * self._carry - 1)
        self._state = _SPEECH
        self._evidence_at = max(self._evidence_at, self._frame_pos)  # the timeout counts from here
        self._utt_start = max(first - self._pre_roll, self._lower)
        return SpeechStart(self._utt_id, self._utt_start)

    def _end(self, now: int) -> SegmentRecords:
        """The pause (or the stream) ends what is open: an utterance closes; a candidate the
        second opinion confirms over its whole window opens and closes at once; others vanish."""
        out: SegmentRecords = []
        if self._state == _CANDIDATE and self._speech_frames >= self._min_frames:
            if self._confirmed(True):
                out.append(self._open())
            else:
                self._dropped = (self._first_speech, self._last_speech_end)
        if self._state == _SPEECH:
            out += self._close(now, forced=False)
        self._state = _IDLE
        self._window.clear()
        return out

    def _close(self, now: int, forced: bool) -> SegmentRecords:
        """End the open utterance ``post_roll`` after its last speech frame (not after ``now``)."""
        end = max(min(self._last_speech_end + self._post_roll, now), self._utt_start + 1)
        self._confirmed_until = self._last_speech_end
        record = SpeechEnd(self._utt_id, end, forced, self.open_sure)
        self._utt_id += 1
        self._lower = end
        self._state = _IDLE
        return [record]

    def _split(self, now: int, after: int = 0) -> SegmentRecords:
        """Split an over-long utterance at the quietest dip of the last ``split_search_s`` (and
        after sample ``after``)."""
        cut = self._quietest_point(after)
        if cut >= self._last_speech_end:
            # Already in a pause: end here; the next speech opens a new utterance as usual.
            return self._close(now, forced=True)
        out: SegmentRecords = [SpeechEnd(self._utt_id, cut, True, self.open_sure)]
        self._utt_id += 1
        self._evidence = [0.0, 0, 0]
        self._utt_start = self._lower = cut
        if not self._confirming:
            out.append(SpeechStart(self._utt_id, cut))
            return out
        # Music after speech would otherwise keep a confirmed utterance open for good: the
        # rest must be confirmed again (speech going on is, within a frame or a syllable).
        self._state, self._first_speech, self._speech_frames = _CANDIDATE, cut, self._min_frames
        self._candidate_at, self._confirmed_until = cut, cut - self._carry - 1
        self._window.clear()
        return out

    def _quietest_point(self, after: int) -> int:
        starts = np.array([s for s, _ in self._levels])
        levels = np.array([v for _, v in self._levels])
        h = self._dip
        # A dip must be quiet over its whole width: score each frame by the loudest frame
        # within +-h (a pause between words beats a stop closure inside one).
        padded = np.pad(levels, h, mode="edge")
        width = np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1)
        score = width.max(axis=1)
        eligible = starts > max(self._utt_start, after)
        order = np.lexsort((levels, score))
        best = next((int(i) for i in order if eligible[i]), len(starts) - 1)
        return int(starts[best]) + self._frame // 2


def find_segments(audio: np.ndarray, settings: SegmenterSettings | None = None) -> list[tuple[int, int]]:
    """Speech segments of a whole recording as (start, end) sample pairs (end exclusive)."""
    seg = Segmenter(settings)
    records = seg.feed(audio) + seg.flush()
    starts = {r.utterance: r.sample for r in records if isinstance(r, SpeechStart)}
    return [(starts[r.utterance], r.sample) for r in records if isinstance(r, SpeechEnd)]
