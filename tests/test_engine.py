"""The engine against plain transformers: same tokens as processor + generate (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glmasr_live.asr.repetition import RepetitionGuard


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    env = np.repeat(rng.uniform(0, 1, n // 1600 + 1) > 0.3, 1600)[:n]
    return (rng.standard_normal(n) * 0.1 * env).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transcribe_equals_processor_plus_generate_two_windows(tiny_engine_factory, seed):
    engine = tiny_engine_factory(seed=seed, chunk_length=30)
    audio = _speechlike(45.0, seed)  # two 30 s windows, as the processor cuts them
    cap = 40
    ours = engine.transcribe([audio], max_new_tokens=cap)[0]

    proc, model = engine.processor, engine.model
    inputs = proc.apply_transcription_request(audio)
    inputs["input_features"] = inputs["input_features"].to(torch.float64)
    assert inputs["input_features"].shape[0] == 2
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=cap)
    ref = out[0, inputs["input_ids"].shape[1] :].tolist()
    eos = engine.eos_ids
    ref = ref[: next((i for i, t in enumerate(ref) if t in eos), len(ref))]
    assert len(set(ref)) > 3, "the random model must produce varied output for the test to mean anything"
    assert list(ours.token_ids) == ref
    assert ours.text == proc.batch_decode([ref], skip_special_tokens=True)[0].strip()


def test_batched_files_equal_one_at_a_time(tiny_engine_factory):
    engine = tiny_engine_factory(seed=4, chunk_length=4)
    a, b = _speechlike(3.0, 1), _speechlike(6.5, 2)
    both = engine.transcribe([a, b], max_new_tokens=30)
    assert both[0].token_ids == engine.transcribe([a], max_new_tokens=30)[0].token_ids
    assert both[1].token_ids == engine.transcribe([b], max_new_tokens=30)[0].token_ids


def test_new_tokens_capped_by_duration(tiny_engine_factory):
    engine = tiny_engine_factory(seed=1, chunk_length=4)
    out = engine.transcribe([_speechlike(0.5, 3)])[0]
    assert len(out.token_ids) <= engine.max_new_tokens(0.5)


def test_repetition_guard_cuts_loops_keeps_one_copy():
    g = RepetitionGuard()
    ids = list("yes no " + "thank you " * 6)
    cut = g.loop_start(ids)
    assert cut is not None and "".join(ids[:cut]).strip() == "yes no thank you"
    assert g.loop_start(list("one two three four five six seven eight nine")) is None
    assert g.loop_start(list("no no no")) is None  # a short genuine repeat is kept
    assert g.loop_start([7] * 40) == 1


def test_engine_guard_removes_runaway_output(tiny_engine_factory):
    # With the default (narrow) init a random model emits one token forever: a loop.
    from glmasr_live.asr.engine import AsrEngine, EngineSettings
    from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model

    tok = build_char_tokenizer()
    engine = AsrEngine(
        EngineSettings(model="t", device="cpu", warmup=False),
        model=build_tiny_model(tok, seed=0),
        processor=build_processor(tok, chunk_length=4),
    )
    out = engine.transcribe([_speechlike(4.0, 0)])[0]
    assert out.loop_removed
    assert len(out.token_ids) < 16


def test_processor_windows_are_whole_audio_tokens_and_the_engine_reads_the_hop():
    """An audio token is 8 mel frames; a window that is not a whole number of them is refused,
    and the engine takes the hop from the processor (the demo model's may differ from 160)."""
    from glmasr_live.asr.engine import AsrEngine, EngineSettings
    from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model

    tok = build_char_tokenizer()
    for chunk, hop in ((5, 160), (6, 320)):
        with pytest.raises(ValueError, match="whole number of audio tokens"):
            build_processor(tok, chunk_length=chunk, hop_length=hop)
    for chunk, hop in ((0, 240), (6, 0), (6, -240)):
        with pytest.raises(ValueError, match="at least 1 s and the hop at least 1 sample"):
            build_processor(tok, chunk_length=chunk, hop_length=hop)
    proc = build_processor(tok, chunk_length=6, hop_length=240)
    engine = AsrEngine(
        EngineSettings(model="t", device="cpu", warmup=False),
        model=build_tiny_model(tok, seed=0),
        processor=proc,
    )
    assert engine.hop == 240 and engine.window_samples == 6 * 16000
    inputs = proc.apply_transcription_request([np.zeros(6 * 16000 + 2 * 8 * 240, np.float32)])
    assert inputs["input_features"].shape[-1] == 6 * 16000 // 240  # 400 frames a window
    assert int((inputs["input_ids"] == engine.audio_token_id).sum()) == 50 + 2  # a window, then 2 tokens


def test_full_size_architecture_matches_the_real_model():
    """``--model full``: the real sizes, the LM head its own (2.26 B parameters, not 2.136 B)."""
    import torch
    from transformers import GlmAsrForConditionalGeneration

    from glmasr_live.asr.engine import parameter_count
    from glmasr_live.asr.full import full_size_config

    with torch.device("meta"):  # sizes only: no memory, no time
        model = GlmAsrForConditionalGeneration(full_size_config(59260))
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert 2.25e9 < parameter_count(model) < 2.27e9
