"""The shipped demo checkpoint really transcribes: accuracy on held-out voices.

The held-out set is regenerated with espeak-ng (voices never used in training) once per session.
Limits are the shipped checkpoint's measured character error rates plus a margin, so that a
worse checkpoint or a broken decoding path fails. The issue's targets (plain 3 %, whispered 8 %,
-40 dBFS 3 %, multi-window 4 %) are not met yet; the model card gives the measured figures.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEMO_MODEL

from glmasr_live import synth

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL / "config.json").exists(), reason="demo model not trained yet"
)


def _rate(pairs: list[tuple[str, str]]) -> float:
    import jiwer

    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    return float(jiwer.cer(refs, hyps))


@pytest.fixture(scope="session")
def heldout():
    """(kind, audio, reference) items: plain, whispered, -40 dBFS, multi-window, silence/noise."""
    rng = np.random.default_rng(2024)
    items = []

    def utt(n_words: int, level: float, whisper: bool = False, lang: str = "en") -> tuple[np.ndarray, str]:
        voice = synth.random_voice(rng, heldout=True, lang=lang)
        if whisper:
            voice = synth.Voice(voice.lang, "whisperf", voice.speed, voice.pitch)
        u = synth.word_utterance(synth.random_words(rng, n_words, lang != "en"), voice, rng)
        a = synth.set_level(u.audio, level)
        a = synth.add_noise(a, level, float(rng.uniform(20, 35)), str(rng.choice(["white", "pink"])), rng)
        pad = np.zeros(int(0.3 * 16000), np.float32)
        return np.concatenate([pad, a, pad]), u.text

    for _ in range(16):
        items.append(("plain", *utt(int(rng.integers(2, 8)), float(rng.uniform(-35, -20)))))
    for _ in range(8):
        items.append(("whisper", *utt(int(rng.integers(2, 6)), float(rng.uniform(-40, -25)), whisper=True)))
    for _ in range(8):
        items.append(("quiet", *utt(int(rng.integers(2, 7)), -40.0)))
    for _ in range(6):
        a, t = utt(int(rng.integers(14, 22)), float(rng.uniform(-35, -22)))
        items.append(("multiwindow", a, t))
    for lang in ("cmn", "yue"):
        for _ in range(3):
            items.append(("cjk", *utt(int(rng.integers(3, 7)), -26.0, lang=lang)))
    for kind in ("white", "pink", "brown"):
        for level in (-60.0, -45.0):
            items.append(("empty", synth.noise(kind, 3 * 16000, rng) * 10 ** (level / 20), ""))
    items.append(("empty", np.zeros(2 * 16000, np.float32), ""))
    return items


@pytest.fixture(scope="session")
def heldout_results(demo_engine, heldout):
    out = []
    for i in range(0, len(heldout), 8):
        chunk = heldout[i : i + 8]
        texts = demo_engine.transcribe([a for _, a, _ in chunk])
        out += [(kind, ref, tr.text) for (kind, _, ref), tr in zip(chunk, texts, strict=True)]
    return out


def test_multiwindow_items_really_span_windows(demo_engine, heldout):
    win = demo_engine.window_samples
    assert all(len(a) > win for kind, a, _ in heldout if kind == "multiwindow")


@pytest.mark.parametrize(
    ("kind", "limit"),
    # measured: plain 4.9 %, whisper 26.9 %, quiet (-40 dBFS) 7.5 %, multiwindow 13.5 %, cjk 7.4 %
    [("plain", 0.08), ("whisper", 0.35), ("quiet", 0.11), ("multiwindow", 0.18), ("cjk", 0.11)],
)
def test_heldout_cer(heldout_results, kind, limit):
    pairs = [(r, h) for k, r, h in heldout_results if k == kind]
    rate = _rate(pairs)
    assert rate <= limit, f"{kind}: CER {rate:.3f} > {limit}: {pairs[:4]}"


def test_overall_cer(heldout_results):
    pairs = [(r, h) for k, r, h in heldout_results if k != "empty"]
    assert _rate(pairs) <= 0.15  # measured 11.7 %


def test_silence_and_noise_give_empty_output(heldout_results):
    empty = [h for k, _, h in heldout_results if k == "empty"]
    assert sum(1 for h in empty if not h.strip()) / len(empty) >= 0.95, empty
