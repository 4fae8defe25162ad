"""The segmenter's settings: what counts as speech, and how utterances open, close and split.

In their own module so that the frame analyser (audio/frames.py) and the segmenter's state
machine (audio/segmenter.py) both read them without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from glmasr_live.events import SAMPLE_RATE
from glmasr_live.option_table import ENDPOINT_S, HANGOVER_S, VAD_MODEL


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
        learned: a third test per frame, a learned one: silero-vad's ONNX model
            (onnxruntime) hears the frames and its speech probability must reach
            ``learned_threshold`` within the last ``learned_memory_s``. The model is deaf to
            many whispers: ``whisper_route`` lets those through, but whispered recall still
            falls short of the targets (83-100 % by level), so it is off
            (``--vad-model silero-frames``); ``confirm`` does the job per utterance instead.
            Needs onnxruntime and silero-vad (dependencies); where they are missing the test is
            skipped with a warning.
        learned_memory_s: how far back the probability may have reached the threshold (the
            model dips between syllables, and whole words, of faint or whispered speech).
        learned_lookback_s: when the model confirms speech late (a whisper), the utterance
            starts at the run of frames that passed the other two tests, up to this far back
            (then the pre-roll): no clipped first word.
        doubt: say how sure the segmenter is that each utterance is speech (``SpeechEnd.sure``,
            for the caption gate in ``policy.py``): the learned model listens as a second
            opinion even when its test is off, and whisper-like frames are counted. Where
            onnxruntime or the model file is missing nothing is said (``sure`` is None) and
            the gate stands aside.
        confirm: an utterance opens only once the second opinion confirms it (the default,
            ``--vad-model silero``): music, typing, dishes and other sound that moves pass the
            first two tests for long stretches, but the learned model rarely reaches
            ``sure_prob`` on them and the whisper route's test never passed on them in the
            benchmark. A candidate is confirmed when, in its latest ``confirm_window_s``, the
            model's probability reached ``sure_prob`` or the whisper route's test passed; at its
            end, when ``sure_whisper_share`` of its frames were whisper-like; or when it starts
            within ``confirm_carry_s`` of a confirmed utterance's last speech frame. Once open
            it is kept whole (every frame that passed the first two tests), so no whispered
            syllable is cut; the next piece of a forced split must be confirmed again. Costs
            the onset's confirmation time in latency (a frame or two for voiced speech); the
            start still points ``pre_roll_s`` before the first speech frame.
        confirm_window_s: how far back a confirmation reaches: an utterance confirmed late
            starts at most this far (plus the pre-roll) before the confirming frame, so its
            audio is still in a 5 s ring buffer.
        confirm_carry_s: a pause this short after a confirmed utterance needs no confirmation
            again (the model hears loud whispers faintly once the gain turns them down); a
            candidate confirmed this soon after an unconfirmed one takes that one in (the first
            half of a sentence under loud music).
        confirm_timeout_s: a confirmed utterance in which the second opinion has heard no
            speech for this long is split at the quietest point since (plus the post-roll), and
            the rest must be confirmed again: music that goes on after the speech, or one note
            the model took for speech, does not keep it open (in the benchmark's speech the
            longest such silence of the second opinion inside an utterance was 0.78 s).
        sure_prob: an utterance is sure when the learned model's probability reached this in it
            (speech on the benchmarks: p10 0.96; moving non-speech: p90 0.12, docs/segmenter.md)
        sure_prob_startup: for the confirmation, in the model's first second after the stream
            starts (or a gap) its probability must reach this instead: on the onset of some
            plucked chords with nothing before them it gives 0.52-0.69, on a word at a stream's
            very start 0.95-1.0 (docs/segmenter.md).
        sure_whisper_share: or when this share of its frames were whisper-like (whispers the
            model is deaf to: 0.30-0.65; moving non-speech at most 0.36).
        whisper_route: with the learned test on, frames the model is deaf to still count when
            they are whisper-like (noise-like but formant-shaped, not impulsive, not an even
            rise over all bands) for ``whisper_share`` of the last ``whisper_window_s``.
        whisper_window_s: the window of that test (a whispered syllable, ~0.3 s).
        whisper_share: the share of its frames that must be over the floor and whisper-like.
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
    doubt: bool = True
    confirm: bool = True
    confirm_window_s: float = 3.0
    confirm_carry_s: float = 1.0
    confirm_timeout_s: float = 1.5
    sure_prob: float = 0.5
    sure_prob_startup: float = 0.8
    sure_whisper_share: float = 0.4
    whisper_route: bool = True
    whisper_window_s: float = 0.3
    whisper_share: float = 0.5

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
        cls,
        sensitivity: float,
        endpoint_s: float | None = None,
        vad_model: str = VAD_MODEL,
        caption_gate: bool = True,
    ) -> SegmenterSettings:
        """Defaults with the user's knobs set: sensitivity (0 = only clear speech, 1 = the
        faintest), when given the endpoint (``--endpoint``; 0 = always the full hangover), and
        ``--vad-model`` (``silero``: the learned model confirms each utterance; ``silero-frames``:
        it judges every frame; ``none``: neither), ``--caption-gate`` (the segmenter's doubt,
        which the gate needs). ``silero`` where onnxruntime or the model is missing runs without
        the confirmation, with a warning (it is the default: a broken install still captions)."""
        learned, confirm = vad_model == "silero-frames", vad_model == "silero"
        if learned:
            from glmasr_live.audio import speechprob
            from glmasr_live.errors import ConfigError

            reason = speechprob.unavailable_reason()
            if reason is not None:  # asked for by name: an error, not a silent fallback
                raise ConfigError(f"--vad-model silero-frames: {reason}")
        if endpoint_s is None:
            return cls(sensitivity=float(sensitivity), learned=learned, confirm=confirm, doubt=caption_gate)
        return cls(
            sensitivity=float(sensitivity),
            endpoint_s=float(endpoint_s),
            learned=learned,
            confirm=confirm,
            doubt=caption_gate,
        )

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
        """Speech probability the learned model must give: 0.65 at sensitivity 0, 0.5 at 0.5,
        0.35 at 1. silero-vad's own default is 0.5; lower thresholds (0.3, the value before the
        whisper route) let piano-like arpeggios through on some seeds (36 % flagged), and the
        whispers they were meant to catch are now caught by the whisper route instead.
        """
        return 0.65 - 0.3 * self.sensitivity

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000

    def samples(self, seconds: float) -> int:
        return int(round(seconds * SAMPLE_RATE))

    def frames(self, seconds: float) -> int:
        """Whole frames covering ``seconds`` (at least 1)."""
        return max(1, math.ceil(seconds * 1000 / self.frame_ms - 1e-9))
