"""The real model's tokenizer paths, on a tiny model with a byte-level BPE vocabulary (trained in
the session with ``tokenizers``): multi-byte characters split across tokens, words carrying
their leading space, the 12 tokens/s cap, the prompt check, retirement, batched rounds."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bursty

from glmasr_live.asr.scripted import ScriptedAnswer

SR = 16000
# Spaces only between Latin words (join_text's rule), so any retirement cut rejoins exactly.
SCRIPT_TEXT = (
    "你好世界龘hello seven three four five please start open blue next back one two six eight nine zero"
)


@pytest.fixture(scope="module")
def bpe_engine():
    from glmasr_live.asr.engine import AsrEngine, EngineSettings
    from glmasr_live.asr.tiny import build_bpe_tokenizer, build_processor, build_tiny_model

    tok = build_bpe_tokenizer()
    settings = EngineSettings(model="tiny-bpe", device="cpu", dtype="float64", warmup=False)
    return AsrEngine(
        settings, model=build_tiny_model(tok, seed=0, spread=1.0), processor=build_processor(tok, 4)
    )


def test_the_vocabulary_splits_rare_characters_and_caps_like_the_real_model(bpe_engine):
    from glmasr_live.asr.prompt import PromptParts

    tok = bpe_engine.tokenizer
    ids = tok("龘", add_special_tokens=False).input_ids
    assert len(ids) == 3 and "\ufffd" in tok.decode(ids[:1])  # one character, three byte tokens
    assert tok.convert_ids_to_tokens(tok(" seven", add_special_tokens=False).input_ids)[0].startswith("Ġ")
    assert len(tok) >= 1000 and bpe_engine.tokens_per_second == 12.0
    assert bpe_engine.max_new_tokens(2.0) == 32
    parts = PromptParts.of(bpe_engine)  # equal to the processor's own tokenization, or refused
    assert parts.head and parts.tail


def test_offline_transcription_runs_and_respects_the_cap(bpe_engine):
    audio = bursty(2.0, 1)
    (tr,) = bpe_engine.transcribe([audio])
    assert len(tr.token_ids) <= bpe_engine.max_new_tokens(2.0)
    assert isinstance(tr.text, str)


def _scripted_decoder(engine, context_s):
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

    dec = StreamingDecoder(engine, StreamingSettings(context_s=context_s, min_block_s=1.5))
    script = list(engine.tokenizer(SCRIPT_TEXT, add_special_tokens=False).input_ids)
    dec.answer = ScriptedAnswer(script, len(script) / 9.0)  # the whole text within 9 s of audio
    return dec, script


@pytest.mark.parametrize("context_s", [None, 2.0])
def test_streaming_never_commits_half_a_character_and_retires_exactly(bpe_engine, context_s):
    dec, script = _scripted_decoder(bpe_engine, context_s)
    audio = bursty(11.0, 4)
    dec.start()
    committed = []
    for i in range(0, len(audio), SR // 2):
        dec.feed(audio[i : i + SR // 2])
        h = dec.step()
        assert "\ufffd" not in h.committed, h
        assert SCRIPT_TEXT.startswith(h.committed), (h.committed, SCRIPT_TEXT)
        committed.append(h.committed)
    final = dec.finish()
    dec.release()
    assert final.committed == SCRIPT_TEXT
    assert committed == sorted(committed, key=len), "committed text only grows"
    if context_s:
        assert dec.stats.retirements >= 1, "the test must reach retirement"
        # Retired text left the prompt; what is still forced is the model's own token ids.
        forced = list(final.committed_ids)
        assert script[len(script) - len(forced) :] == forced


def test_batched_rounds_equal_each_stream_alone_with_bpe(bpe_engine):
    from test_rounds import _drive

    from glmasr_live.asr.streaming import StreamingSettings

    settings = StreamingSettings(encoder_padding="none", min_block_s=1.5, step_tokens=6, context_s=2.0)
    audios = [bursty(s, 20 + k) for k, s in enumerate((3.0, 8.0, 6.0))]
    alone, _, _ = _drive(bpe_engine, audios, [1, 0, 0], settings, batched=False)
    batched, _, phases = _drive(bpe_engine, audios, [1, 0, 0], settings, batched=True)
    assert batched == alone
    assert phases[0] >= 2, "streams must have closed blocks"
    texts = [bpe_engine.decode(list(h[-1])) for h in alone]
    assert all(isinstance(t, str) for t in texts) and np.mean([len(t) for t in texts]) > 0
