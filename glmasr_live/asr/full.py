"""The full-size GLM-ASR architecture with random weights, for the benchmarks (no download)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from transformers import GlmAsrConfig, GlmAsrForConditionalGeneration

from glmasr_live.asr.engine import AsrEngine, EngineSettings
from glmasr_live.asr.tiny import build_char_tokenizer, build_processor


def full_size_engine(settings: EngineSettings) -> AsrEngine:
    """The real architecture and sizes (2.26 B parameters: the real checkpoint's LM head is its
    own, not tied to the embeddings); only the audio token id follows the local tokenizer."""
    tok = build_char_tokenizer()
    proc = build_processor(tok, chunk_length=30)
    torch.manual_seed(0)
    pad: Any = tok.convert_tokens_to_ids("<|pad|>")
    m = GlmAsrForConditionalGeneration(full_size_config(int(pad)))
    return AsrEngine(replace(settings, warmup=False), model=m, processor=proc)


def full_size_config(audio_token_id: int) -> GlmAsrConfig:
    """GLM-ASR-Nano-2512's configuration: transformers' defaults with the head untied."""
    return GlmAsrConfig(audio_token_id=audio_token_id, tie_word_embeddings=False)  # type: ignore[arg-type]


def accelerator_peak_mib(device: Any) -> float | None:
    """Peak accelerator memory allocated so far (MiB), None on the CPU."""
    if getattr(device, "type", "cpu") == "cuda":
        return float(torch.cuda.max_memory_allocated() / 2**20)
    return None
