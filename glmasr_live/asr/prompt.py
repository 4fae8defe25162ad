"""The GLM-ASR prompt around the audio tokens, one LM pass, and the from-scratch hypothesis.

``reference_hypothesis`` is what the streaming decoder's caches must reproduce exactly (the
exactness tests) and what the naive policy of the benchmark runs at every step.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from glmasr_live.asr.blocks import Padding, encode_blocks
from glmasr_live.asr.engine import AsrEngine
from glmasr_live.events import SAMPLE_RATE


@functools.cache
def _cache_kw(lm_type: Any) -> str:
    # transformers 5.2x renamed ``past_key_values`` to ``cache``; accept both releases.
    return "cache" if "cache" in inspect.signature(lm_type.forward).parameters else "past_key_values"


def run_lm(
    lm: Any,
    embeds: torch.Tensor,
    cache: Any,
    mask: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Extend ``cache`` with ``embeds``; the last hidden states. ``mask`` (a prepared 4-D
    additive mask) and ``positions`` come with the slot caches of ``asr/kv.py``."""
    kw = _cache_kw(type(lm))  # type: ignore[arg-type]
    out = lm(inputs_embeds=embeds, use_cache=True, attention_mask=mask, position_ids=positions, **{kw: cache})
    return out.last_hidden_state


class PromptParts:
    """The prompt around the audio tokens, taken from the processor's own chat template.

    The decoder tokenizes the text around the audio itself (it prefills the head once and the
    tail after each block); built once per engine and instruction, and checked against the
    processor's own tokenization of the same request, so a tokenizer that adds special tokens
    or merges across the audio placeholder cannot make the two silently differ.
    """

    def __init__(self, engine: AsrEngine, instruction: str | None = None):
        proc = engine.processor
        prompt = instruction or engine.prompt
        probe = np.zeros(SAMPLE_RATE, np.float32)
        text = proc.apply_transcription_request(probe, prompt=prompt, tokenize=False)[0]
        head, _, tail = text.partition(proc.audio_token)
        # The template has one audio placeholder, expanded by the processor into N of them.
        tok = engine.tokenizer
        self.head = list(tok(head, add_special_tokens=False).input_ids)
        self.tail = list(tok(tail, add_special_tokens=False).input_ids)
        self._check(engine, proc.apply_transcription_request(probe, prompt=prompt)["input_ids"][0].tolist())

    def _check(self, engine: AsrEngine, reference: list[int]) -> None:
        audio = engine.audio_token_id
        n = sum(1 for t in reference if t == audio)
        mine = self.head + [audio] * n + self.tail
        if mine != reference:
            from glmasr_live.errors import ModelLoadError

            at = next(
                (i for i, (a, b) in enumerate(zip(mine, reference, strict=False)) if a != b),
                min(len(mine), len(reference)),
            )
            raise ModelLoadError(
                f"the decoder's prompt differs from the processor's tokenization at token {at} "
                f"({mine[at : at + 4]} vs {reference[at : at + 4]}): this model's tokenizer or chat "
                "template is not supported by the streaming decoder"
            )

    @classmethod
    def of(cls, engine: AsrEngine, instruction: str | None = None) -> PromptParts:
        """The engine's parts for ``instruction`` (built and checked once per engine)."""
        cache: dict[str | None, PromptParts] = engine.__dict__.setdefault("_prompt_parts", {})
        if instruction not in cache:
            cache[instruction] = cls(engine, instruction)
        return cache[instruction]


def reference_hypothesis(
    engine: AsrEngine,
    audio: np.ndarray,
    bounds: list[tuple[int, int]],
    forced: list[int],
    budget: int,
    padding: Padding = "full",
    instruction: str | None = None,
) -> list[int]:
    """From scratch, no caches: blocks ``bounds`` (plus the open rest) encoded, the whole prompt
    prefilled in one pass, greedy decoding. The exactness tests' and the naive policy's path."""
    parts = PromptParts.of(engine, instruction)
    embed = engine.model.get_input_embeddings()
    dev = engine.device
    with torch.inference_mode():
        pieces: list[Any] = [embed(torch.tensor([parts.head], device=dev))[0]]
        ends = [e for _, e in bounds]
        last = ends[-1] if ends else 0
        blocks = [audio[s:e] for s, e in bounds] + ([audio[last:]] if len(audio) > last else [])
        for toks in encode_blocks(engine, blocks, padding):
            pieces.append(toks.to(engine.dtype))
        pieces.append(embed(torch.tensor([parts.tail + forced], device=dev))[0])
        embeds = torch.cat(pieces)[None]
        cache = DynamicCache()
        lm = engine.model.model.language_model
        hidden = run_lm(lm, embeds, cache)
        out: list[int] = []
        for _ in range(budget):
            tok = int(engine.model.lm_head(hidden[:, -1]).argmax(-1))
            if tok in engine.eos_ids:
                break
            out.append(tok)
            nxt = embed(torch.tensor([[tok]], device=dev))
            hidden = run_lm(lm, nxt, cache)
    return out
