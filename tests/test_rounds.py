"""Batched rounds across streams: every stream's hypotheses equal the same stream decoded alone,
token for token (float64, several seeds), for streams at different phases in the same round."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bursty

from glmasr_live.asr.rounds import slot_store
from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings, decode_round

SR = 16000
STEP = SR // 2


def _drive(engine, audios, offsets, settings, batched):
    """Feed each stream STEP samples a round from its offset on; partial steps while audio
    remains, then its final. Batched: one ``decode_round`` per round; else one at a time."""
    decs = [StreamingDecoder(engine, settings) for _ in audios]
    pos = [0] * len(audios)
    ids: list[list[tuple[int, ...]]] = [[] for _ in audios]
    texts: list[list[str]] = [[] for _ in audios]
    done = [False] * len(audios)
    phases = [0, 0]  # most closed blocks and retirements any stream reached
    rnd = 0
    while not all(done):
        plans = []
        for k, (dec, audio) in enumerate(zip(decs, audios, strict=True)):
            if done[k] or rnd < offsets[k]:
                continue
            if not dec.active:
                dec.start()
            if pos[k] < len(audio):
                dec.feed(audio[pos[k] : pos[k] + STEP])
                pos[k] += STEP
                plans.append((k, dec.plan(final=False)))
            else:
                plans.append((k, dec.plan(final=True)))
        hyps = decode_round([p for _, p in plans]) if batched else [decode_round([p])[0] for _, p in plans]
        for (k, plan), h in zip(plans, hyps, strict=True):
            phases = [max(phases[0], len(decs[k].block_bounds)), max(phases[1], decs[k].stats.retirements)]
            ids[k].append(h.ids)
            texts[k].append(h.committed + "|" + h.tentative)
            if plan.final:
                decs[k].release()
                done[k] = True
        rnd += 1
    return ids, texts, phases


@pytest.mark.parametrize(("seed", "padding"), [(0, "full"), (1, "full"), (2, "none"), (3, "none")])
def test_batched_rounds_equal_each_stream_alone_tiny(tiny_engine_factory, seed, padding):
    engine = tiny_engine_factory(seed=seed, chunk_length=4)
    settings = StreamingSettings(encoder_padding=padding, min_block_s=1.5, step_tokens=6)
    audios = [bursty(s, seed * 10 + k) for k, s in enumerate((2.5, 9.0, 12.0, 4.0))]
    offsets = [3, 0, 1, 0]  # one joins late: first block next to others' closed blocks and finals
    alone, _, _ = _drive(engine, audios, offsets, settings, batched=False)
    before = len(slot_store(engine).slots)
    batched, _, phases = _drive(engine, audios, offsets, settings, batched=True)
    assert batched == alone
    assert phases[0] >= 2, "streams must close blocks for the test to mean something"
    assert len(slot_store(engine).slots) == before  # every stream's slot was given back


@pytest.fixture(scope="module")
def demo64():
    from glmasr_live.asr.engine import AsrEngine, EngineSettings

    return AsrEngine(EngineSettings(model="demo", device="cpu", dtype="float64", warmup=False))


def _speech(seed: int, n_words: int, lang: str) -> np.ndarray:
    from glmasr_live.devtools import synth

    rng = np.random.default_rng(seed)
    cjk = lang != "en"
    voice = synth.Voice(lang, "", 150, 50) if cjk else synth.Voice("en-us", "m3", 160, 50)
    u = synth.word_utterance(
        synth.random_words(rng, n_words, cjk), voice, rng, gap_s=(0.05, 0.2), long_pause_p=0.15
    )
    return synth.set_level(u.audio, -26)


def test_batched_rounds_equal_alone_english_and_cjk_with_retired_blocks(demo64):
    settings = StreamingSettings(context_s=3.0)
    audios = [_speech(1, 22, "en"), _speech(2, 18, "cmn"), _speech(3, 5, "en"), _speech(4, 12, "yue")]
    offsets = [0, 2, 6, 1]
    alone, alone_text, _ = _drive(demo64, audios, offsets, settings, batched=False)
    batched, batched_text, phases = _drive(demo64, audios, offsets, settings, batched=True)
    assert batched == alone and batched_text == alone_text
    blocks, retired = phases
    assert blocks >= 2 and retired >= 1, "a stream must have closed and retired blocks"
    finals = [t[-1] for t in batched_text]
    assert all(f.endswith("|") and f != "|" for f in finals)  # every stream's final has text
    assert " " not in finals[1].strip("|")  # CJK joined without spaces
