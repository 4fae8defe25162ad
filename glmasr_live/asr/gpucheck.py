"""The prepared GPU check: the full-size architecture (random weights) timed stage by stage.

Encoder per padded window and per true-length block, LM prefill per 100 tokens at three prompt
lengths, decoding per token, the streaming step at 0.5 s partials with both encoder paddings,
peak accelerator memory. Needs only torch, transformers and this package's ``asr/`` (no audio
libraries), so it runs on a bare CUDA machine; ``--model tiny`` is the CPU smoke test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from glmasr_live.asr.blocks import encode_blocks
from glmasr_live.asr.engine import AsrEngine, EngineSettings
from glmasr_live.asr.prompt import run_lm
from glmasr_live.asr.scripted import ScriptedAnswer
from glmasr_live.events import SAMPLE_RATE

BLOCK_SECONDS = (1, 3, 6, 15)
PROMPT_TOKENS = (100, 400, 1500)
SCRIPT_RATE = 4.0  # tokens per second of speech, as the benchmarks script random-weight output


def build(model: str, device: str, dtype: str) -> AsrEngine:
    settings = EngineSettings(model=model, device=device, dtype=dtype, warmup=False)
    if model == "full":
        from glmasr_live.asr.full import full_size_engine

        return full_size_engine(settings)
    from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model

    tok = build_char_tokenizer()
    return AsrEngine(
        settings, model=build_tiny_model(tok, seed=0), processor=build_processor(tok, chunk_length=30)
    )


def _ms(engine: AsrEngine, fn: Callable[[], Any], repeats: int) -> float:
    """Median wall milliseconds of ``fn`` after one warm-up call (synchronised on CUDA)."""
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * 0.05).astype(np.float32)


def encoder_ms(engine: AsrEngine, repeats: int) -> dict[str, float]:
    out = {"padded_window": _ms(engine, lambda: encode_blocks(engine, [_noise(1.0)], "full"), repeats)}
    for s in BLOCK_SECONDS:
        out[f"true_{s}s"] = _ms(engine, _encode_once(engine, _noise(min(s, engine.window_seconds))), repeats)
    return out


def _encode_once(engine: AsrEngine, block: np.ndarray) -> Callable[[], Any]:
    return lambda: encode_blocks(engine, [block], "none")


@torch.inference_mode()
def prefill_ms_per_100(engine: AsrEngine, repeats: int) -> dict[str, float]:
    lm = engine.model.model.language_model
    width = lm.config.hidden_size
    out = {}
    for n in PROMPT_TOKENS:
        embeds = torch.randn(1, n, width, device=engine.device, dtype=engine.dtype) * 0.02
        out[str(n)] = _ms(engine, _prefill_once(lm, embeds), repeats) * 100 / n
    return out


def _prefill_once(lm: Any, embeds: torch.Tensor) -> Callable[[], Any]:
    return lambda: run_lm(lm, embeds, DynamicCache())


@torch.inference_mode()
def decode_ms_per_token(engine: AsrEngine, context: int = 400, tokens: int = 32) -> float:
    lm = engine.model.model.language_model
    head = engine.model.get_output_embeddings()
    embed = engine.model.get_input_embeddings()
    width = lm.config.hidden_size

    def run() -> None:
        cache = DynamicCache()
        hidden = run_lm(
            lm, torch.randn(1, context, width, device=engine.device, dtype=engine.dtype) * 0.02, cache
        )
        for _ in range(tokens):
            nxt = head(hidden[:, -1:]).argmax(-1)
            hidden = run_lm(lm, embed(nxt), cache)

    prefill = _ms(engine, lambda: run_lm(lm, torch.randn(1, context, width, device=engine.device, dtype=engine.dtype) * 0.02, DynamicCache()), 3)  # fmt: skip
    return (_ms(engine, run, 3) - prefill) / tokens


def streaming_step_ms(engine: AsrEngine, padding: str, seconds: float = 12.0) -> dict[str, float]:
    """Partial steps every 0.5 s over one utterance of ``seconds`` (scripted text), then its final."""
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

    dec = StreamingDecoder(engine, StreamingSettings(encoder_padding=padding))  # type: ignore[arg-type]
    script = list(
        engine.tokenizer(
            "one two three four five six seven eight nine ten " * 20, add_special_tokens=False
        ).input_ids
    )
    dec.answer = ScriptedAnswer(script, SCRIPT_RATE)
    audio = _noise(seconds, 1)
    dec.start()
    steps = []
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    for i in range(0, len(audio), SAMPLE_RATE // 2):
        dec.feed(audio[i : i + SAMPLE_RATE // 2])
        sync()
        t0 = time.perf_counter()
        dec.step()
        sync()
        steps.append(1000 * (time.perf_counter() - t0))
    t0 = time.perf_counter()
    dec.finish()
    sync()
    final = 1000 * (time.perf_counter() - t0)
    dec.release()
    return {"mean": statistics.fmean(steps), "p95": float(np.percentile(steps, 95)), "final": final}


def run(
    model: str = "full", device: str = "cuda", dtype: str = "bfloat16", repeats: int = 5
) -> dict[str, Any]:
    t0 = time.perf_counter()
    engine = build(model, device, dtype)
    result: dict[str, Any] = {
        "meta": {
            "model": model, "parameters": engine.parameters, "device": str(engine.device),
            "device_name": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu",
            "dtype": str(engine.dtype).replace("torch.", ""), "window_s": engine.window_seconds,
            "torch": torch.__version__, "build_s": round(time.perf_counter() - t0, 1),
        },
        "encoder_ms": encoder_ms(engine, repeats),
        "prefill_ms_per_100_tokens": prefill_ms_per_100(engine, repeats),
        "decode_ms_per_token": decode_ms_per_token(engine),
        "streaming_step_ms": {p: streaming_step_ms(engine, p) for p in ("full", "none")},
    }  # fmt: skip
    if engine.device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(engine.device) / 2**20
    result["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
    return result


def format_table(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        f"{m['model']} ({m['parameters'] / 1e9:.3f} B parameters) on {m['device_name']}, {m['dtype']}, "
        f"window {m['window_s']:g} s, torch {m['torch']}",
        f"{'stage':<44}{'ms':>10}",
        "-" * 54,
        f"{'encoder, one padded window':<44}{r['encoder_ms']['padded_window']:>10.1f}",
    ]
    for s in BLOCK_SECONDS:
        lines.append(f"{f'encoder, true-length {s} s block':<44}{r['encoder_ms'][f'true_{s}s']:>10.1f}")
    for n, v in r["prefill_ms_per_100_tokens"].items():
        lines.append(f"{f'prefill per 100 tokens, prompt of {n}':<44}{v:>10.2f}")
    lines.append(f"{'decode per token (context 400)':<44}{r['decode_ms_per_token']:>10.2f}")
    for p, v in r["streaming_step_ms"].items():
        lines.append(
            f"{f'streaming 0.5 s partial, padding {p}: mean/p95':<44}{v['mean']:>10.1f} / {v['p95']:.1f}"
        )
        lines.append(f"{f'  final of the 12 s utterance, padding {p}':<44}{v['final']:>10.1f}")
    if "peak_memory_mib" in r:
        lines.append(f"{'peak GPU memory (MiB)':<44}{r['peak_memory_mib']:>10.0f}")
    lines.append(f"total {m['total_s']:.0f} s")
    return "\n".join(lines)
