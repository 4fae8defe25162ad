"""The shipped demo checkpoint really transcribes: accuracy on held-out voices.

The held-out set is regenerated with espeak-ng (voices never used in training) once per session.
Limits are the shipped checkpoint's measured character error rates plus a margin, so that a
worse checkpoint or a broken decoding path fails. The targets the checkpoint was trained to:
overall 3 %, whispered 8 %, -40 dBFS 3 %, multi-window 4 % (met), silence/noise empty >= 95 %
(met); the model card gives the measured figures.
"""

from __future__ import annotations

import pytest
from conftest import DEMO_MODEL

from glmasr_live.devtools import synth

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
    return synth.demo_heldout_set()


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


def test_heldout_voices_are_recorded_and_never_trained_on(heldout):
    voices: list = []
    again = synth.demo_heldout_set(2024, voices)
    assert [(k, r) for k, _, r in again] == [(k, r) for k, _, r in heldout]  # the same set
    assert len(voices) == len(heldout)
    for (kind, _, _), voice in zip(heldout, voices, strict=True):
        assert (voice is None) == (kind == "empty")
        if voice is not None:
            assert voice.variant in synth.HELDOUT_VARIANTS, voice
            assert voice.lang in (*synth.HELDOUT_EN_BASES, "cmn", "yue"), voice
            assert (voice.variant == "whisperf") >= (kind == "whisper")


@pytest.mark.parametrize(
    ("kind", "limit"),
    # measured on the shipped checkpoint (one 53-minute training run): plain 3.9 %, whisper 0.0 %, quiet (-40 dBFS) 2.5 %,
    # multiwindow 3.4 %, cjk 0.0 %; the limits leave room for other CPUs and library versions
    [("plain", 0.06), ("whisper", 0.05), ("quiet", 0.05), ("multiwindow", 0.05), ("cjk", 0.03)],
)
def test_heldout_cer(heldout_results, kind, limit):
    pairs = [(r, h) for k, r, h in heldout_results if k == kind]
    rate = _rate(pairs)
    assert rate <= limit, f"{kind}: CER {rate:.3f} > {limit}: {pairs[:4]}"


def test_overall_cer(heldout_results):
    pairs = [(r, h) for k, r, h in heldout_results if k != "empty"]
    assert _rate(pairs) <= 0.045  # measured 2.9 %


def test_silence_and_noise_give_empty_output(heldout_results):
    empty = [h for k, _, h in heldout_results if k == "empty"]
    assert sum(1 for h in empty if not h.strip()) / len(empty) >= 0.95, empty
