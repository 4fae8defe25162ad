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
