"""Shared fixtures: tiny GLM-ASR engines built from config (no download), the demo model."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_engine_factory():
    """Build an ``AsrEngine`` around a small random model with varied (audio-dependent) output."""
    from glmasr_live.asr.engine import AsrEngine, EngineSettings
    from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model

    cache: dict[tuple, AsrEngine] = {}

    def make(seed: int = 0, chunk_length: int = 4, dtype: str = "float64", guard: bool = False) -> AsrEngine:
        key = (seed, chunk_length, dtype, guard)
        if key not in cache:
            tok = build_char_tokenizer()
            proc = build_processor(tok, chunk_length=chunk_length)
            model = build_tiny_model(tok, seed=seed, spread=1.0)
            settings = EngineSettings(
                model=f"tiny-seed{seed}", device="cpu", dtype=dtype, repetition_guard=guard, warmup=False
            )
            cache[key] = AsrEngine(settings, model=model, processor=proc)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def demo_engine():
    from glmasr_live.asr.engine import AsrEngine, EngineSettings

    return AsrEngine(EngineSettings(model="demo", device="cpu"))


DEMO_MODEL = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "demo-model"


@pytest.fixture(scope="session")
def three_utterances(tmp_path_factory):
    """A wav of three in-domain utterances (held-out voices) separated by pauses, with references.

    Returns (path, [reference text per utterance], audio array).
    """
    import numpy as np

    from glmasr_live.devtools import synth

    rng = np.random.default_rng(11)
    script = [
        (synth.Voice("en-gb-scotland", "m7", 150, 45), "hello seven three nine start".split(), -24),
        (synth.Voice("en-us", "f4", 150, 60), "open left two five".split(), -30),
        (synth.Voice("en-gb-x-gbcwmd", "m2", 150, 40), "blue eight four zero next".split(), -26),
    ]
    pieces = [np.zeros(8000, np.float32)]
    refs = []
    for voice, words, level in script:
        u = synth.word_utterance(words, voice, rng, gap_s=(0.05, 0.15), long_pause_p=0.0)
        pieces += [synth.set_level(u.audio, level), np.zeros(int(1.6 * 16000), np.float32)]
        refs.append(u.text)
    audio = np.concatenate(pieces)
    path = tmp_path_factory.mktemp("speech") / "three.wav"
    synth.write_wav(path, audio)
    return path, refs, audio


def bursty(seconds: float, seed: int):
    """Noise bursts (0.4-1.2 s) separated by clear pauses (0.3-0.6 s), like words and phrases:
    what makes the streaming decoder close blocks on a tiny random model."""
    import numpy as np

    sr = 16000
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(x) for x in out) < seconds * sr:
        out.append((rng.standard_normal(int(rng.uniform(0.4, 1.2) * sr)) * 0.1).astype(np.float32))
        out.append(np.zeros(int(rng.uniform(0.3, 0.6) * sr), np.float32))
    return np.concatenate(out)[: int(seconds * sr)]


def cer(ref: str, hyp: str) -> float:
    import jiwer

    return float(jiwer.cer(ref, hyp)) if ref else float(bool(hyp))


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs filled to the last byte (needs root and mount, as in CI's container)."""
    import contextlib
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
        os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


@pytest.fixture(scope="module")
def captioner(demo_engine):
    """One ``Captioner`` (the demo model) shared by a module's servers."""
    from glmasr_live.streams import Captioner

    cap = Captioner(engine=demo_engine)
    yield cap
    cap.close()


@pytest.fixture(scope="module")
def speech():
    """Two speakers' utterances the demo model knows, each followed by a pause: name -> (audio, text)."""
    import numpy as np

    from glmasr_live.devtools import synth

    sr = 16000
    rng = np.random.default_rng(11)
    out = {}
    for name, words, voice in [
        ("alice", "hello seven three nine start".split(), synth.Voice("en-us", "f4", 150, 60)),
        ("bob", "open left two five".split(), synth.Voice("en-us", "m3", 150, 50)),
    ]:
        u = synth.word_utterance(words, voice, rng, gap_s=(0.05, 0.15), long_pause_p=0.0)
        pad = np.zeros(sr // 2, np.float32)
        out[name] = (np.concatenate([pad, synth.set_level(u.audio, -24), np.zeros(sr, np.float32)]), u.text)
    return out
