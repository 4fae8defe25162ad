"""The caption gate: the model's confidence, the segmenter's doubt, and what the gate hides."""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys

import numpy as np
import pytest

from glmasr_live.audio.segmenter import Segmenter, SegmenterSettings
from glmasr_live.devtools import noisesynth, synth, vadbench
from glmasr_live.events import SAMPLE_RATE as SR
from glmasr_live.events import Hypothesis, SpeechEnd, SpeechStart
from glmasr_live.gate import GateSettings, compression_ratio, verdict
from glmasr_live.policy import StreamPolicy
from glmasr_live.replay import replay


@functools.cache
def music(kind: str = "music-pluck", seconds: float = 20.0) -> np.ndarray:
    return noisesynth.make(kind, seconds, -30, seed=100)


@functools.cache
def whispers() -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    audio, meta = vadbench._speech_file("whisper", -40, "pink", 6, 28)
    return audio, tuple(w for u in meta.utterances for w in u)


def _hyp(text: str, logprob: float | None, final: bool = True) -> Hypothesis:
    return Hypothesis(text, "", SR, final, 0.0, logprob=logprob)


def test_the_gate_needs_both_judges_to_doubt() -> None:
    g = GateSettings()
    assert verdict(_hyp("go go", -1.0), sure=False, settings=g) == "unsure"
    assert verdict(_hyp("go go", -1.0), sure=True, settings=g) is None  # the segmenter vouches
    assert verdict(_hyp("go go", -1.0), sure=None, settings=g) is None  # it cannot say
    assert verdict(_hyp("hello", -0.01), sure=False, settings=g) is None  # the model is sure
    loop = "no red " * 12
    assert compression_ratio(loop) > g.max_compression > compression_ratio("hello three yes left")
    assert verdict(_hyp(loop, -0.01), sure=False, settings=g) == "repetition"


OWN_TESTS = SegmenterSettings(confirm=False)  # --vad-model none: the segmenter opens on music


def _sure_of(audio: np.ndarray, settings: SegmenterSettings) -> list[bool | None]:
    seg = Segmenter(settings)
    return [r.sure for r in seg.feed(audio) + seg.flush() if isinstance(r, SpeechEnd)]


def test_the_segmenter_is_sure_of_speech_and_doubts_music() -> None:
    voice = synth.Voice("en-us", "m3")
    utt = synth.word_utterance(["hello", "three", "yes", "left"], voice, np.random.default_rng(1))
    speech = np.concatenate(
        [np.zeros(SR, np.float32), synth.set_level(utt.audio, -30), np.zeros(SR, np.float32)]
    )
    assert _sure_of(speech, SegmenterSettings()) == [True]
    assert _sure_of(music(), SegmenterSettings()) == []  # by default silero confirms none of it
    on_music = _sure_of(music(), OWN_TESTS)
    assert on_music and not any(on_music)  # the two tests alone open on music, but doubt it
    assert set(_sure_of(music(), SegmenterSettings(doubt=False, confirm=False))) == {None}  # gate off


def test_whispers_the_learned_model_is_deaf_to_are_vouched_for_by_their_frames() -> None:
    audio, _ = whispers()
    sure = _sure_of(audio, SegmenterSettings())
    assert len(sure) >= 6 and all(sure)  # (a pause inside a word list may split one)
    # silero alone vouches for none of them: the whisper-like frames do
    assert not any(_sure_of(audio, SegmenterSettings(sure_whisper_share=1.01)))


def _finals(engine, audio: np.ndarray, gate: bool) -> tuple[list[str], StreamPolicy]:
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

    policy = StreamPolicy(segmenter=SegmenterSettings(doubt=gate, confirm=False))
    events = list(replay(audio, StreamingDecoder(engine, StreamingSettings()), policy=policy))
    return [e.text for e in events if e.type == "final" and e.text], policy


def test_music_makes_few_captions_with_the_gate_and_whispers_lose_no_word(demo_engine) -> None:
    off, _ = _finals(demo_engine, music(), gate=False)
    on, policy = _finals(demo_engine, music(), gate=True)
    assert len(off) >= 10, off  # the demo model does hallucinate on this music
    assert len(on) <= len(off) // 3, (on, off)
    assert policy.stats.gated_finals >= len(off) - len(on)
    audio, _ = whispers()
    assert _finals(demo_engine, audio, gate=True)[0] == _finals(demo_engine, audio, gate=False)[0]


def test_the_final_of_a_shown_partial_still_comes_when_the_gate_hides_it() -> None:
    # The policy alone: a partial went out before the segmenter's doubt settled; the gated
    # final withdraws it with no text (finals are never dropped).
    policy = StreamPolicy()
    policy._records([SpeechStart(0, 0)])
    work = policy.take(0.5)
    assert work is not None and work.kind == "partial"
    shown = policy.complete(work, _hyp("go", -0.01, final=False), 0.1, 0.6)
    assert [e.text for e in shown] == ["go"]
    policy._records([SpeechEnd(0, SR, sure=False)])
    work = policy.take(1.0)
    assert work is not None and work.kind == "final"
    events = policy.complete(work, _hyp("go go", -2.0), 0.1, 1.1)
    assert [(e.type, e.text) for e in events] == [("final", "")]
    assert policy.stats.gated_finals == 1


def test_a_final_after_no_partial_that_the_gate_hides_is_no_event() -> None:
    policy = StreamPolicy()
    policy._records([SpeechStart(0, 0), SpeechEnd(0, SR, sure=False)])
    work = policy.take(1.0)
    assert work is not None and work.kind == "final"
    assert policy.complete(work, _hyp("blue no no", -0.9), 0.1, 1.1) == []
    assert not policy._utts  # the utterance is completed all the same


def test_forced_tokens_get_the_log_probability_the_model_gave_when_it_chose_them(demo_engine) -> None:
    # The same final once with committed text forced and once generated freely: same tokens in
    # the same context, so the same mean log-probability (the forced ones come from the prefill).
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

    audio = vadbench._speech_file("voiced", -30, "white", 2, 5)[0][: 5 * SR]
    free = StreamingDecoder(demo_engine, StreamingSettings(commit=False))
    forced = StreamingDecoder(demo_engine, StreamingSettings())
    for dec in (free, forced):
        dec.start()
        for i in range(0, len(audio), SR // 2):
            dec.feed(audio[i : i + SR // 2])
            dec.step()
    a, b = free.finish(), forced.finish()
    assert b.forced > 0 and a.ids == b.ids, (a, b)
    assert a.logprob is not None and b.logprob == pytest.approx(a.logprob, abs=1e-4)
    assert -5.0 < a.logprob <= 0.0


def test_caption_gate_flag_on_the_command_line(tmp_path) -> None:
    import soundfile as sf

    wav = tmp_path / "music.wav"
    sf.write(wav, music("music-pluck", 12.0), SR)
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300)
    base = [sys.executable, "-m", "glmasr_live", "transcribe", "--model", "demo", "--mode", "streaming",
            "--vad-model", "none"]  # fmt: skip
    off = run([*base, "--caption-gate", "off", str(wav)])
    on = run([*base, str(wav)])
    assert off.returncode == 0 and on.returncode == 0, on.stderr
    assert len(on.stdout.split()) < len(off.stdout.split()), (on.stdout, off.stdout)
    bad = run([*base, "--caption-gate", "maybe", str(wav)])
    assert bad.returncode == 2 and "--caption-gate" in bad.stderr


def test_looser_thresholds_let_more_through() -> None:
    g = dataclasses.replace(GateSettings(), min_logprob=-10.0, max_compression=100.0)
    assert verdict(_hyp("go go", -1.0), sure=False, settings=g) is None
