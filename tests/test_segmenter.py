"""The segmenter on synthetic signals: espeak-ng speech from -20 to -60 dBFS (voiced and
whispered), stationary noise of every colour, silence; plus the ``vad`` command and a quick run
of the VAD benchmark against its targets."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from glmasr_live.audio.segmenter import Segmenter, SegmenterSettings, find_segments
from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE as SR
from glmasr_live.events import SpeechEnd, SpeechStart

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

WORDS = ["seven", "hello", "three", "stop", "green"]
LEAD_S, TAIL_S = 1.0, 1.5


@dataclasses.dataclass
class Clip:
    audio: np.ndarray
    spans: list[tuple[int, int]]  # word spans, absolute samples


@functools.cache
def clip(lang: str, variant: str, level: float, colour: str | None, snr: float, seed: int = 0) -> Clip:
    """Noise, one utterance of WORDS (no long pauses), noise; speech RMS at ``level`` dBFS."""
    rng = np.random.default_rng(seed)
    voice = synth.Voice(lang, variant)
    words = list("七三五一九") if voice.is_cjk else WORDS
    utt = synth.word_utterance(words, voice, rng, long_pause_p=0.0)
    lead = int(LEAD_S * SR)
    x = np.concatenate([np.zeros(lead, np.float32), utt.audio, np.zeros(int(TAIL_S * SR), np.float32)])
    x = synth.set_level(x, level, active=utt.audio)
    if colour is not None:
        x = synth.add_noise(x, level, snr, colour, rng)
    return Clip(x, [(lead + a, lead + b) for a, b in utt.spans])


def records(seg: Segmenter, audio: np.ndarray, block: int | None = None) -> list[SpeechStart | SpeechEnd]:
    if block is None:
        return seg.feed(audio) + seg.flush()
    out = [r for i in range(0, len(audio), block) for r in seg.feed(audio[i : i + block])]
    return out + seg.flush()


def seconds(segments: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(round(a / SR, 3), round(b / SR, 3)) for a, b in segments]


# ---------------------------------------------------------------------------- no speech


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
@pytest.mark.parametrize("level", [-30, -50, -70])
def test_stationary_noise_is_not_speech(colour: str, level: float) -> None:
    x = synth.noise(colour, 8 * SR, np.random.default_rng(-level)) * np.float32(10 ** (level / 20))
    seg = Segmenter()
    assert records(seg, x, 480) == []
    assert not seg.in_speech


@pytest.mark.parametrize("kind", ["digital silence", "16-bit hiss", "noise then silence"])
def test_silence_is_not_speech(kind: str) -> None:
    rng = np.random.default_rng(1)
    if kind == "digital silence":
        x = np.zeros(6 * SR, np.float32)
    elif kind == "16-bit hiss":
        x = np.round(rng.standard_normal(6 * SR) * 1.5) / 32768  # ~1.5 LSB of noise
    else:
        x = np.concatenate(
            [
                synth.noise("pink", 3 * SR, rng) * 0.003,
                np.zeros(3 * SR),
                synth.noise("pink", 3 * SR, rng) * 0.003,
            ]
        )
    assert find_segments(x.astype(np.float32)) == []


def test_rising_noise_is_not_speech() -> None:
    # An input AGC turning the gain up during silence: +20 dB over 5 s.
    gain = 10 ** (np.linspace(-70, -50, 5 * SR) / 20)
    x = (synth.noise("pink", 5 * SR, np.random.default_rng(2)) * gain).astype(np.float32)
    assert find_segments(x) == []


# ---------------------------------------------------------------------------- speech caught whole

SPEECH_CASES = [
    ("en", "", -20, None, 0),
    ("en", "m3", -40, "pink", 15),
    ("en-us", "f2", -60, "white", 20),
    ("en", "whisper", -58, "white", 20),
    ("en-gb-x-rp", "whisperf", -58, "pink", 15),
    ("en", "whisper", -40, "brown", 10),
    ("cmn", "", -50, "brown", 12),
    ("yue", "", -30, "white", 10),
]


@pytest.mark.parametrize(("lang", "variant", "level", "colour", "snr"), SPEECH_CASES)
def test_speech_is_caught_whole_with_pre_roll(
    lang: str, variant: str, level: float, colour: str | None, snr: float
) -> None:
    c = clip(lang, variant, level, colour, snr)
    s = SegmenterSettings(endpoint_s=0.0)  # the hangover alone: pauses < 0.5 s stay inside
    segments = find_segments(c.audio, s)
    assert len(segments) == 1, seconds(segments)
    (start, end), first, last = segments[0], c.spans[0][0], c.spans[-1][1]
    # The onset is never clipped: the pre-roll reaches well before the first word...
    assert first - s.pre_roll_s * SR - 0.1 * SR <= start <= first - 0.1 * SR, (start / SR, first / SR)
    # ...and the post-roll past the last one, within the 0.4 s the benchmark allows.
    assert last + 0.1 * SR <= end <= last + 0.4 * SR, (end / SR, last / SR)


def test_pause_shorter_than_hangover_stays_inside_and_a_longer_one_splits() -> None:
    rng = np.random.default_rng(3)
    voice = synth.Voice("en", "whisper")
    short = synth.word_utterance(["seven", "three"], voice, rng, gap_s=(0.3, 0.3), long_pause_p=0)
    long_ = synth.word_utterance(["seven", "three"], voice, rng, gap_s=(1.2, 1.2), long_pause_p=0)
    pad = np.zeros(SR, np.float32)
    for utt, expected in ((short, 1), (long_, 2)):
        x = synth.add_noise(
            synth.set_level(np.concatenate([pad, utt.audio, pad]), -50, utt.audio), -50, 20, "white", rng
        )
        assert len(find_segments(x, SegmenterSettings(endpoint_s=0.0))) == expected


def test_end_comes_one_hangover_after_the_last_word() -> None:
    c = clip("en", "", -40, "white", 20)
    s = SegmenterSettings(endpoint_s=0.0)
    seg = Segmenter(s)
    for i in range(0, len(c.audio), 480):
        if any(isinstance(r, SpeechEnd) for r in seg.feed(c.audio[i : i + 480])):
            emitted_at = seg.position
            break
    else:
        pytest.fail("no SpeechEnd")
    delay = (emitted_at - c.spans[-1][1]) / SR
    assert s.hangover_s - 0.01 <= delay <= s.hangover_s + 0.1


def test_blip_shorter_than_min_speech_opens_nothing() -> None:
    word = synth.render("seven", synth.Voice("en"))
    blip = word[len(word) // 3 :][: int(0.045 * SR)]
    rng = np.random.default_rng(4)
    x = synth.add_noise(
        np.concatenate([np.zeros(2 * SR), blip * 0.1, np.zeros(2 * SR)]), -30, 30, "white", rng
    )
    assert find_segments(x) == []
    assert len(find_segments(x, dataclasses.replace(SegmenterSettings(), min_speech_s=0.03))) == 1


# ---------------------------------------------------------------------------- forced split


def test_long_speech_is_split_in_a_pause_never_mid_word() -> None:
    rng = np.random.default_rng(5)
    voice = synth.Voice("en", "m3", speed=170)
    vocab = synth.EN_WORDS
    parts = [
        synth.word_utterance(
            [vocab[i] for i in rng.integers(0, 30, n)], voice, rng, gap_s=(0.05, 0.12), long_pause_p=0
        )
        for n in (20, 45)
    ]
    lead, pause = SR, int(0.35 * SR)
    x = np.concatenate([np.zeros(lead), parts[0].audio, np.zeros(pause), parts[1].audio, np.zeros(SR)])
    spans = [(lead + a, lead + b) for a, b in parts[0].spans]
    pause_at = lead + len(parts[0].audio)
    spans += [(pause_at + pause + a, pause_at + pause + b) for a, b in parts[1].spans]
    x = synth.add_noise(synth.set_level(x.astype(np.float32), -30), -30, 30, "white", rng)
    s = dataclasses.replace(SegmenterSettings(), max_utterance_s=10.0, split_search_s=4.0, endpoint_s=0.0)
    out = records(Segmenter(s), x, 480)
    cuts = [r.sample for r in out if isinstance(r, SpeechEnd) and r.forced]
    assert len(cuts) >= 2
    start = out[0].sample
    assert pause_at - start >= s.max_utterance_s * SR - s.split_search_s * SR, (
        "test setup: pause in the window"
    )
    assert pause_at <= cuts[0] <= pause_at + pause, (cuts[0] / SR, pause_at / SR)
    for cut in cuts:
        assert not any(a <= cut < b for a, b in spans), cut / SR
    # A forced end is followed at once by the next utterance, at the same sample.
    for i, r in enumerate(out):
        if isinstance(r, SpeechEnd) and r.forced:
            assert out[i + 1] == SpeechStart(r.utterance + 1, r.sample)
    assert [r.utterance for r in out if isinstance(r, SpeechStart)] == list(range(len(cuts) + 1))


# ---------------------------------------------------------------------------- stream handling


def test_gap_ends_the_open_utterance_at_the_gap() -> None:
    c = clip("en", "", -40, "white", 20)
    mid = (c.spans[1][0] + c.spans[1][1]) // 2
    seg = Segmenter()
    first = seg.feed(c.audio[:mid])
    assert first == [SpeechStart(0, first[0].sample)] and seg.in_speech
    lost = SR // 2
    assert seg.gap(mid + lost, lost) == [SpeechEnd(0, mid)]
    assert not seg.in_speech
    rest = seg.feed(c.audio) + seg.flush()  # the stream goes on (the same clip again)
    assert [type(r) for r in rest] == [SpeechStart, SpeechEnd]
    assert rest[0].utterance == 1 and rest[0].sample >= mid + lost
    with pytest.raises(ValueError):
        seg.gap(0, 10)


def test_gap_zeros_fed_by_a_ring_buffer_are_harmless() -> None:
    c = clip("en", "", -40, "white", 20)
    mid = (c.spans[1][0] + c.spans[1][1]) // 2
    seg = Segmenter()
    seg.feed(c.audio[:mid])
    lost = SR // 5  # shorter than the hangover: the utterance is still open
    assert seg.feed(np.zeros(lost, np.float32)) == []  # the ring buffer's zeros for the lost samples
    assert seg.gap(mid + lost, lost) == [SpeechEnd(0, mid)]
    noise = synth.noise("white", 3 * SR, np.random.default_rng(6)) * np.float32(10 ** (-60 / 20))
    assert seg.feed(noise) == []  # the floor did not fall to the zeros


def test_records_do_not_depend_on_block_sizes() -> None:
    a, b = clip("en", "whisper", -50, "pink", 15), clip("en", "f2", -30, "brown", 12)
    x = np.concatenate([a.audio[: 3 * SR], b.audio[int(0.5 * SR) : 3 * SR]])
    s = dataclasses.replace(SegmenterSettings(), max_utterance_s=1.5, split_search_s=1.0)  # splits too
    whole = records(Segmenter(s), x)
    assert any(isinstance(r, SpeechEnd) and r.forced for r in whole) and len(whole) >= 4
    assert records(Segmenter(s), x, 480) == whole
    assert records(Segmenter(s), x, 1) == whole
    rng, seg, out, i = np.random.default_rng(7), Segmenter(s), [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out += seg.feed(x[i : i + n])
        i += n
    assert out + seg.flush() == whole


def test_start_sample_shifts_every_record() -> None:
    x = clip("en", "", -40, "white", 20).audio
    base = records(Segmenter(), x, 4000)
    shifted = records(Segmenter(start_sample=123_456), x, 4000)
    assert [dataclasses.replace(r, sample=r.sample - 123_456) for r in shifted] == base
    assert base[0].utterance == 0


def test_int16_input_matches_float() -> None:
    x = clip("en", "", -30, "white", 20).audio
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    assert records(Segmenter(), pcm) == records(Segmenter(), pcm.astype(np.float32) / 32768)
    with pytest.raises(ValueError):
        Segmenter().feed(np.zeros((480, 2), np.float32))


def test_ui_state_follows_the_input() -> None:
    c = clip("en", "whisper", -55, "white", 15)
    seg = Segmenter()
    assert seg.level_dbfs == -120.0 and not seg.in_speech
    seg.feed(c.audio[: c.spans[0][0] - SR // 10])  # noise only, at -70 dBFS
    assert -73 <= seg.level_dbfs <= -67
    assert -76 <= seg.noise_floor_dbfs <= -68
    assert seg.gain_db >= 25  # a quiet input is turned up for webrtcvad
    seg.feed(c.audio[c.spans[0][0] - SR // 10 : c.spans[1][1]])
    assert seg.in_speech


# ---------------------------------------------------------------------------- settings, speed


def test_settings_are_documented_and_checked() -> None:
    doc = SegmenterSettings.__doc__ or ""
    for f in dataclasses.fields(SegmenterSettings):
        assert f"{f.name}:" in doc, f.name
    lo, mid, hi = (SegmenterSettings.from_sensitivity(v) for v in (0.0, 0.5, 1.0))
    assert lo.snr_threshold_db > mid.snr_threshold_db > hi.snr_threshold_db
    assert lo.webrtc_mode >= mid.webrtc_mode >= hi.webrtc_mode == 0
    assert mid == SegmenterSettings()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            SegmenterSettings.from_sensitivity(bad)
    with pytest.raises(ValueError):
        SegmenterSettings(frame_ms=25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mid.hangover_s = 1.0  # type: ignore[misc]


def test_runs_far_faster_than_real_time() -> None:
    x = np.tile(clip("en", "whisper", -58, "white", 20).audio, 3)
    seg = Segmenter()
    t0 = time.perf_counter()
    for i in range(0, len(x), 480):
        seg.feed(x[i : i + 480])
    elapsed = time.perf_counter() - t0
    frames = len(x) // 480
    # Real time is 33 frames/s; even on a busy shared core this should be 1000s.
    assert frames / elapsed > 33 * 20, f"{frames / elapsed:.0f} frames/s"


# ---------------------------------------------------------------------------- command, benchmark


def test_vad_command_prints_segments(tmp_path, capsys) -> None:
    from glmasr_live.cli import main

    c = clip("en", "whisper", -58, "white", 20)
    path = tmp_path / "whisper.wav"
    synth.write_wav(path, c.audio)
    exe = shutil.which("glmasr-live")
    cmd = [exe] if exe else [sys.executable, "-m", "glmasr_live"]
    done = subprocess.run([*cmd, "vad", str(path), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    segments = json.loads(done.stdout)
    assert len(segments) == 1 and set(segments[0]) == {"start", "end"}
    assert segments[0]["start"] < c.spans[0][0] / SR < c.spans[-1][1] / SR < segments[0]["end"]

    assert main(["vad", str(path)]) == 0
    start, end = (float(v) for v in capsys.readouterr().out.split())
    assert (start, end) == (segments[0]["start"], segments[0]["end"])

    with pytest.raises(SystemExit) as exit_info:
        main(["vad", str(path), "--vad-sensitivity", "2"])
    assert exit_info.value.code == 2
    assert main(["vad", str(tmp_path / "missing.wav")]) == 2


def test_quick_benchmark_meets_the_targets(tmp_path_factory) -> None:
    from glmasr_live.devtools import vadbench

    result = vadbench.run(quick=True, silero=False, root=tmp_path_factory.mktemp("vadbench"))
    ours = result["summary"]["segmenter"]
    assert ours["targets_met"], vadbench.format_table(result)
    assert ours["words_clipped"] == 0.0
    assert {"webrtc0", "webrtc3"} <= set(result["summary"])
    assert ours["ms_per_frame_speech"] > 0 and ours["ms_per_frame_noise"] > 0
    assert "ms/frame noise-only" in vadbench.format_table(result)
    whispers = [r for r in result["rows"] if r["method"] == "segmenter" and r["kind"] == "whisper"]
    assert {r["level"] for r in whispers} >= {-58} and all(r["caught"] == 1.0 for r in whispers)


# ---------------------------------------------------------------------------- endpoint


def end_emitted_at(audio: np.ndarray, settings: SegmenterSettings) -> list[int]:
    """Sample positions (in 30 ms feeds) at which each SpeechEnd record came out."""
    seg, at = Segmenter(settings), []
    for i in range(0, len(audio), 480):
        at += [i + 480 for r in seg.feed(audio[i : i + 480]) if isinstance(r, SpeechEnd)]
    return at


@pytest.mark.parametrize(
    ("lang", "variant", "level", "colour", "snr"), [c for c in SPEECH_CASES if c[2] >= -50]
)
def test_clear_pause_ends_the_utterance_within_endpoint(
    lang: str, variant: str, level: float, colour: str | None, snr: float
) -> None:
    c = clip(lang, variant, level, colour, snr)
    last = c.spans[-1][1]
    fast = end_emitted_at(c.audio, SegmenterSettings())  # default endpoint 0.2 s
    assert len(fast) == 1, "short pauses between words must not split the utterance"
    assert 0.15 * SR <= fast[0] - last <= 0.3 * SR, (fast[0] - last) / SR
    slow = end_emitted_at(c.audio, SegmenterSettings(endpoint_s=0.0))
    assert len(slow) == 1 and slow[0] - last >= 0.45 * SR, "endpoint 0 waits for the hangover"


def two_words_with_pause(burst_db: float | None) -> np.ndarray:
    """ "seven", a 0.4 s pause (optionally with a 30 ms rustle over the noise), "three"."""
    rng = np.random.default_rng(0)
    voice = synth.Voice("en", "m3")
    a, b = synth.render("seven", voice), synth.render("three", voice)
    x = np.concatenate(
        [np.zeros(SR, np.float32), a, np.zeros(int(0.4 * SR), np.float32), b, np.zeros(SR, np.float32)]
    )
    x = synth.set_level(x, -30, active=np.concatenate([a, b]))
    x = synth.add_noise(x, -30, 20, "pink", rng)
    if burst_db is not None:
        start, n = SR + len(a) + int(0.18 * SR), int(0.03 * SR)
        x[start : start + n] += synth.noise("white", n, rng) * np.float32(10 ** ((-50 + burst_db) / 20))
    return x


def test_endpoint_waits_for_the_hangover_when_the_pause_is_not_clearly_silent() -> None:
    # A clear 0.4 s pause ends the utterance at the endpoint: two segments...
    assert len(find_segments(two_words_with_pause(None))) == 2
    # ...but a faint rustle 6 dB over the noise inside it is not clear silence: the pause is
    # judged by the 0.5 s hangover and the two words stay one utterance.
    assert len(find_segments(two_words_with_pause(6.0))) == 1
    assert len(find_segments(two_words_with_pause(None), SegmenterSettings(endpoint_s=0.0))) == 1


def test_endpoint_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        SegmenterSettings(endpoint_s=0.6)


def test_noise_gated_source_keeps_words_with_short_gaps_together() -> None:
    # Digital silence between words (a noise gate): the floor comes from the quietest speech,
    # so the fading end of a word must not count as a clear pause.
    rng = np.random.default_rng(11)
    for voice in (synth.Voice("en-gb-x-gbcwmd", "m2", 150, 40), synth.Voice("en-us", "f4", 150, 60)):
        u = synth.word_utterance(
            "blue eight four zero next".split(), voice, rng, gap_s=(0.05, 0.15), long_pause_p=0
        )
        pad = np.zeros(SR, np.float32)
        x = np.concatenate([pad, synth.set_level(u.audio, -26), pad])
        assert len(find_segments(x)) == 1


# ---------------------------------------------------------------------------- sound that moves


def _learned() -> SegmenterSettings:
    from glmasr_live.audio import speechprob

    reason = speechprob.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return SegmenterSettings(learned=True, confirm=False)


def _confirming() -> SegmenterSettings:
    """The default: the learned model confirms each utterance (``--vad-model silero``)."""
    from glmasr_live.audio import speechprob

    reason = speechprob.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return SegmenterSettings()


def flagged(audio: np.ndarray, settings: SegmenterSettings) -> float:
    return sum(b - a for a, b in find_segments(audio, settings)) / len(audio)


@functools.cache
def moving(kind: str, level: float, seed: int = 7, seconds: float = 20.0) -> np.ndarray:
    """Moving non-speech (glmasr_live.devtools.noisesynth), made once per test session."""
    from glmasr_live.devtools import noisesynth

    return noisesynth.make(kind, seconds, level, seed=seed)


@pytest.mark.parametrize(
    ("kind", "level"),
    [
        ("music-pluck", -30),
        ("music-groove", -45),
        ("music-pad", -30),
        pytest.param(
            "music-arpeggio",
            -30,
            marks=pytest.mark.xfail(
                reason="silero-vad itself gives >= 0.5 on some piano-like notes on this seed: "
                "6.2 % flagged here, 0 % on the benchmark seed (docs/segmenter.md)"
            ),
        ),
        ("typing", -35),
        ("wind", -30),
        ("dishes", -35),
        ("doors", -35),
    ],
)
def test_moving_sound_is_not_speech_with_the_learned_test(kind: str, level: float) -> None:
    assert flagged(moving(kind, level), _learned()) <= 0.02


def test_the_whisper_route_is_what_lets_whispers_past_the_learned_test() -> None:
    # A benchmark recording (six whispered utterances at -40 dBFS in white noise) that
    # silero-vad is deaf to: without the whisper route the learned test loses all six.
    from glmasr_live.devtools import vadbench

    audio, meta = vadbench._speech_file("whisper", -40, "white", 6, 28)
    learned = _learned()
    with_route = vadbench.score(meta, vadbench.segmenter_detector(learned)(audio))
    without = vadbench.score(
        meta, vadbench.segmenter_detector(dataclasses.replace(learned, whisper_route=False))(audio)
    )
    assert with_route.caught_share == 1.0 and with_route.fa_share <= 0.01
    assert without.caught_share <= 0.5


@pytest.mark.parametrize(
    ("lang", "variant", "level", "colour", "snr"),
    [("en", "whisper", -58, "white", 20), ("en", "m3", -58, "white", 20), ("cmn", "", -58, "white", 20),
     ("en-gb-x-rp", "whisperf", -58, "pink", 15), ("en", "whisper", -40, "brown", 10)],
)  # fmt: skip
def test_faint_speech_is_still_caught_with_the_learned_test(
    lang: str, variant: str, level: float, colour: str, snr: float
) -> None:
    c = clip(lang, variant, level, colour, snr)
    segs = find_segments(c.audio, dataclasses.replace(_learned(), endpoint_s=0.0))  # one segment
    assert len(segs) == 1 and segs[0][0] <= c.spans[0][0] - int(0.2 * SR) and segs[0][1] >= c.spans[-1][1]


@pytest.mark.parametrize(("music", "snr"), [("music-pluck", 10), ("music-groove", 5)])
def test_speech_over_music_is_caught_with_the_learned_test(music: str, snr: float) -> None:
    c = clip("en", "m3", -30, None, 0)
    x = c.audio + moving(music, -30 - snr, 3, len(c.audio) / SR)[: len(c.audio)]
    segs = find_segments(x, _learned())
    assert any(a <= c.spans[0][0] and b >= c.spans[-1][1] for a, b in segs), seconds(segs)


@pytest.mark.parametrize(
    ("kind", "level"),
    [("music-pluck", -30), ("music-groove", -45), ("music-pad", -30),
     ("typing", -35), ("wind", -30), ("dishes", -35), ("doors", -35), ("clicks", -35), ("babble", -35),
     ("music-arpeggio", -30)],
)  # fmt: skip
def test_moving_sound_opens_nothing_by_default(kind: str, level: float) -> None:
    audio = moving(kind, level)
    assert flagged(audio, _confirming()) <= 0.02
    if kind.startswith("music"):  # what the confirmation is for: the two tests alone open it
        assert flagged(audio, dataclasses.replace(_confirming(), confirm=False)) > 0.2


def test_one_note_taken_for_speech_holds_the_utterance_open_no_longer_than_the_timeout() -> None:
    audio = moving("music-arpeggio", -30, seed=8)  # silero-vad reaches 0.5 on a note at ~12 s
    s = _confirming()
    assert 0 < flagged(audio, s) <= (s.confirm_window_s + s.confirm_timeout_s + s.post_roll_s + 0.5) / 20
    assert flagged(audio, dataclasses.replace(s, confirm_timeout_s=30.0)) > 0.5


def test_music_from_the_first_sample_opens_nothing_but_a_first_word_does() -> None:
    # The model's first chunks on plucked chords with nothing before them reach 0.5-0.69; in
    # its first second the confirmation asks 0.8, which a word at the very start reaches.
    s = _confirming()
    assert flagged(moving("music-pluck", -30, seed=4, seconds=10.0), s) == 0.0
    assert (
        flagged(
            moving("music-pluck", -30, seed=4, seconds=10.0), dataclasses.replace(s, sure_prob_startup=0.5)
        )
        > 0.2
    )
    word = synth.word_utterance(["yes"], synth.Voice("en-us", "m3"), np.random.default_rng(1), long_pause_p=0)
    x = np.concatenate([synth.set_level(word.audio, -40), np.zeros(SR, np.float32)])
    x += np.random.default_rng(2).standard_normal(len(x)).astype(np.float32) * 1e-4
    segs = find_segments(x, s)
    assert len(segs) == 1 and segs[0][0] == 0 and segs[0][1] >= word.spans[-1][1], seconds(segs)


@pytest.mark.parametrize(
    ("lang", "variant", "level", "colour", "snr"),
    [("en", "whisper", -58, "white", 20), ("en", "whisper", -20, "brown", 10), ("cmn", "", -58, "pink", 15),
     ("en-gb-x-rp", "whisperf", -40, "brown", 10), ("yue", "", -60, "white", 20), ("en", "m3", -50, "pink", 20)],
)  # fmt: skip
def test_faint_and_whispered_speech_is_confirmed_whole(
    lang: str, variant: str, level: float, colour: str, snr: float
) -> None:
    c = clip(lang, variant, level, colour, snr)
    segs = find_segments(c.audio, dataclasses.replace(_confirming(), endpoint_s=0.0))
    assert len(segs) == 1, seconds(segs)
    assert segs[0][0] <= c.spans[0][0] - int(0.2 * SR) and segs[0][1] >= c.spans[-1][1]


@pytest.mark.parametrize(("music", "snr"), [("music-pluck", 0), ("music-groove", 0), ("music-arpeggio", 5)])
def test_speech_over_loud_music_is_confirmed(music: str, snr: float) -> None:
    c = clip("en", "m3", -30, None, 0)
    x = c.audio + moving(music, -30 - snr, 3, len(c.audio) / SR)[: len(c.audio)]
    segs = find_segments(x, _confirming())
    assert any(a <= c.spans[0][0] and b >= c.spans[-1][1] for a, b in segs), seconds(segs)


def test_a_confirmed_late_utterance_reaches_back_no_further_than_the_window() -> None:
    # 8 s of music with no pause, then speech over it: the candidate opened on the music,
    # the speech confirms it; the utterance starts within the window (+ pre-roll) of the speech,
    # not 8 s back where the ring buffer no longer holds the audio.
    c = clip("en", "m3", -30, None, 0)
    music = moving("music-groove", -40, 5, 8.0 + len(c.audio) / SR)
    x = music.copy()
    x[8 * SR : 8 * SR + len(c.audio)] += c.audio[: len(x) - 8 * SR]
    s = _confirming()
    segs = find_segments(x, s)
    first_word = 8 * SR + c.spans[0][0]
    hits = [(a, b) for a, b in segs if a <= first_word < b]
    assert hits, seconds(segs)
    reach = s.samples(s.confirm_window_s + s.pre_roll_s + 1.0)  # + the confirmation's own delay
    assert first_word - hits[0][0] <= reach, seconds(segs)
    assert not [a for a, b in segs if b < 8 * SR - SR], seconds(segs)  # the music alone: nothing


def test_confirmed_at_its_end_the_utterance_opens_and_closes_at_once() -> None:
    # Records for a candidate confirmed only by its whole share of whisper-like frames come
    # together at its end; whatever the block size, the same records.
    c = clip("en", "whisper", -40, "white", 20)
    s = _confirming()
    whole = records(Segmenter(s), c.audio)
    assert [type(r) for r in whole] == [SpeechStart, SpeechEnd]
    for block in (160, 480, 4096):
        assert records(Segmenter(s), c.audio, block) == whole


def test_vad_model_flag_reaches_the_segmenter_through_the_cli(tmp_path):
    """Music: the default (silero confirms) opens nothing, ``--vad-model none`` opens most of it,
    ``silero-frames`` nothing; ``transcribe`` shows no final on it by default."""
    from glmasr_live.audio import speechprob
    from glmasr_live.devtools import noisesynth

    if speechprob.unavailable_reason() is not None:
        pytest.skip(speechprob.unavailable_reason())
    path = tmp_path / "music.wav"
    synth.write_wav(path, noisesynth.make("music-groove", 12.0, -30.0, seed=3))
    base = [sys.executable, "-m", "glmasr_live", "vad", str(path), "--json"]

    def speech(*flags: str) -> float:
        done = subprocess.run([*base, *flags], capture_output=True, text=True, timeout=120, check=True)
        return _speech_seconds(json.loads(done.stdout))

    assert speech() < 0.25 < speech("--vad-model", "none")
    assert speech("--vad-model", "silero-frames") < 0.25
    cmd = [sys.executable, "-m", "glmasr_live", "transcribe", str(path), "--mode", "streaming", "--model", "demo",
           "--format", "jsonl"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    assert not [line for line in out.splitlines() if '"type":"final"' in line], out


def _speech_seconds(report) -> float:
    segs = report["segments"] if isinstance(report, dict) else report
    return sum(s["end"] - s["start"] for s in segs)


def test_the_second_opinion_sleeps_through_quiet_and_wakes_with_context() -> None:
    from glmasr_live.audio import speechprob

    if speechprob.unavailable_reason() is not None:
        pytest.skip(speechprob.unavailable_reason())
    ears = speechprob.Listeners()
    frame = np.full(480, 0.001, np.float32)
    assert not ears.awake and ears.feed(frame, frame, over=False) == []  # quiet from the start
    awake = [ears.feed(frame, frame, over=True)] + [ears.feed(frame, frame, over=False) for _ in range(33)]
    assert all(len(p) <= 1 for p in awake[1:]) and ears.awake
    asleep = [ears.feed(frame, frame, over=False) for _ in range(40)]
    assert not ears.awake and not any(asleep)  # ~1 s after the last frame over the floor: no model
    woken = ears.feed(frame, frame, over=True)
    assert len(woken) >= 30  # the last ~1 s heard first, as context for the onset


def test_the_learned_model_sleeps_through_stationary_noise() -> None:
    # Stationary noise never rises over its floor: the second opinion is never asked.
    x = synth.noise("pink", 6 * SR, np.random.default_rng(3)) * np.float32(10 ** (-60 / 20))
    seg = Segmenter(_confirming())
    for i in range(0, len(x), 480):
        seg.feed(x[i : i + 480])
        assert i < SR or not seg._an._learned.awake, i / SR  # the floor settles within a second
    assert seg.speech_prob == 0.0 and not seg.in_speech


def test_two_distant_talkers_are_speech() -> None:
    # Babble is speech: with two far-off talkers the segmenter hears it, as a VAD should (six,
    # the benchmark's babble, are above; how often they open it varies, docs/segmenter.md).
    from glmasr_live.devtools import noisesynth

    two = synth.set_level(noisesynth.babble(12.0, np.random.default_rng(2), talkers=2), -35)
    assert flagged(two, _confirming()) > 0.2
