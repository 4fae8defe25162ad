"""``glmasr-live bench``: what streaming costs, measured on this machine.

Compute (per second of audio): encoder audio-seconds processed, LM tokens prefilled, tokens
decoded, wall time — for (a) the offline single pass, (b) the streaming decoder at a partial
interval with full and with no encoder padding, (c) the naive policy peers use (every step
re-runs the whole utterance and decodes everything again), on a monologue with natural pauses
fed as one utterance. Per-step cost early vs late in the utterance shows whether it stays flat.

``--model full`` builds the full-size GLM-ASR architecture with random weights (no download);
since random weights produce no real text, generation follows a fixed script at a realistic
rate (4 tokens per second of audio) with the same compute per token.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glmasr_live.asr.defaults import CONTEXT_S
from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

SCRIPT_RATE = 4.0  # tokens per second of speech: GLM-ASR's BPE on English runs at ~3-4


@dataclass
class Measure:
    policy: str
    audio_s: float
    steps: int = 0
    encoder_audio_s: float = 0.0
    prefill_tokens: int = 0
    decoded_tokens: int = 0
    wall_s: float = 0.0
    step_ms_first: float = 0.0  # mean step time over the first quarter of the utterance
    step_ms_last: float = 0.0  # ... and over the last quarter
    step_ms_max: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def per_audio_second(self) -> dict[str, float]:
        a = max(self.audio_s, 1e-9)
        return {
            "encoder_s_per_s": self.encoder_audio_s / a,
            "prefill_tok_per_s": self.prefill_tokens / a,
            "decoded_tok_per_s": self.decoded_tokens / a,
            "wall_s_per_s": self.wall_s / a,
        }


def build_engine(model: str, device: str, dtype: str) -> Any:
    from glmasr_live.asr.engine import AsrEngine, EngineSettings

    settings = EngineSettings(model=model, device=device, dtype=dtype, repetition_guard=True)
    if model != "full":
        return AsrEngine(settings)
    from glmasr_live.asr.full import full_size_engine

    return full_size_engine(settings)


def monologue(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One speaker, phrases of 3-9 words with natural pauses (0.3-0.9 s) in between."""
    rng = np.random.default_rng(seed)
    voice = synth.Voice("en-us", "m3", 160, 45)
    pieces: list[np.ndarray] = []
    words: list[dict[str, Any]] = []
    pos = 0
    while pos < seconds * SAMPLE_RATE:
        u = synth.word_utterance(
            synth.random_words(rng, int(rng.integers(3, 10)), False), voice, rng, long_pause_p=0
        )
        for w, (a, b) in zip(u.words, u.spans, strict=True):
            words.append({"word": w, "start": (pos + a) / SAMPLE_RATE, "end": (pos + b) / SAMPLE_RATE})
        pieces.append(synth.set_level(u.audio, -24))
        pause = np.zeros(int(rng.uniform(0.3, 0.9) * SAMPLE_RATE), np.float32)
        pieces.append(pause)
        pos += len(u.audio) + len(pause)
    audio = np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]
    return audio, [w for w in words if w["end"] <= seconds]


def _script(engine: Any, seconds: float, full: bool) -> list[int] | None:
    if not full:
        return None
    rng = np.random.default_rng(1)
    text = " ".join(synth.random_words(rng, int(seconds * SCRIPT_RATE) + 50, False))
    return list(engine.tokenizer(text, add_special_tokens=False).input_ids)


def _decoder(engine: Any, script: list[int] | None, **kw: Any) -> Any:
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings

    dec = StreamingDecoder(engine, StreamingSettings(**kw))
    if script is not None:
        from glmasr_live.asr.scripted import ScriptedAnswer

        dec.answer = ScriptedAnswer(script, SCRIPT_RATE)
    return dec


def _add(m: Measure, stats: Any) -> None:
    m.encoder_audio_s += stats.encoder_audio_s
    m.prefill_tokens += stats.prefill_tokens
    m.decoded_tokens += stats.decoded_tokens


def _quarters(m: Measure, times: list[float]) -> None:
    q = max(1, len(times) // 4)
    m.steps = len(times)
    m.step_ms_first = 1000 * float(np.mean(times[:q]))
    m.step_ms_last = 1000 * float(np.mean(times[-q:]))
    m.step_ms_max = 1000 * float(np.max(times))


def utterances_of(audio: np.ndarray) -> list[np.ndarray]:
    """The monologue cut by the VAD, as the live pipeline cuts it (pauses shorter than the
    hangover stay inside an utterance; 30 s at most)."""
    from glmasr_live.audio.segmenter import find_segments

    return [audio[a:b] for a, b in find_segments(audio)]


def run_offline(engine: Any, utts: list[np.ndarray], script: list[int] | None) -> Measure:
    m = Measure("offline", sum(len(u) for u in utts) / SAMPLE_RATE)
    times = []
    for u in utts:
        dec = _decoder(engine, script, commit=False, close_blocks="window")
        t0 = time.perf_counter()
        dec.start()
        dec.feed(u)
        dec.finish()
        times.append(time.perf_counter() - t0)
        _add(m, dec.stats)
    m.wall_s = sum(times)
    _quarters(m, times)
    return m


POSITION_BINS = (0.0, 5.0, 10.0, 20.0, 30.0, 45.0)
"""Edges (seconds into the utterance) of the per-step cost table."""


def run_streaming(
    engine: Any,
    utts: list[np.ndarray],
    script: list[int] | None,
    padding: str,
    interval: float,
    context_s: float | None = CONTEXT_S,
) -> Measure:
    m = Measure(f"streaming-{padding}", sum(len(u) for u in utts) / SAMPLE_RATE)
    dec = _decoder(engine, script, encoder_padding=padding, context_s=context_s)
    step = int(interval * SAMPLE_RATE)
    times: list[float] = []
    by_position: list[tuple[float, float]] = []  # (seconds into the utterance, step time)
    t0 = time.perf_counter()
    for u in utts:
        dec.start()
        for i in range(0, len(u), step):
            dec.feed(u[i : i + step])
            t = dec.step().step_seconds
            times.append(t)
            by_position.append(((i + step) / SAMPLE_RATE, t))
        times.append(dec.finish().step_seconds)
    m.wall_s = time.perf_counter() - t0
    _add(m, dec.stats)
    _quarters(m, times)
    # Flatness: mean partial step time early in utterances vs late in long ones.
    early = [t for p, t in by_position if p <= 3.0]
    late = [t for p, t in by_position if p >= 8.0]
    m.extra["step_ms_at_0_3s"] = 1000 * float(np.mean(early)) if early else None
    m.extra["step_ms_after_8s"] = 1000 * float(np.mean(late)) if late else None
    m.extra["step_ms_by_position"] = step_ms_by_position(by_position)
    m.extra["retirements"] = dec.stats.retirements
    return m


def step_ms_by_position(by_position: list[tuple[float, float]]) -> dict[str, float]:
    """Mean partial step time (ms) per stretch of the utterance: flat means it does not grow."""
    edges = [*POSITION_BINS, float("inf")]
    out: dict[str, float] = {}
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        ts = [t for p, t in by_position if a < p <= b]
        if ts:
            out[f"{a:g}-{b:g}s" if b != float("inf") else f">{a:g}s"] = 1000 * float(np.mean(ts))
    return out


def run_naive(
    engine: Any, utts: list[np.ndarray], script: list[int] | None, interval: float, max_steps: int | None
) -> Measure:
    """Every step: the whole utterance so far from scratch, everything decoded again."""
    m = Measure("naive", sum(len(u) for u in utts) / SAMPLE_RATE)
    step = int(interval * SAMPLE_RATE)
    ends = [(k, e) for k, u in enumerate(utts) for e in range(step, len(u) + step, step)]
    if max_steps and len(ends) > max_steps:  # sample the run evenly, scale the totals
        idx = np.linspace(0, len(ends) - 1, max_steps).round().astype(int)
        sampled = [ends[i] for i in idx]
    else:
        sampled = ends
    times = []
    for k, end in sampled:
        dec = _decoder(engine, script, commit=False, close_blocks="window")
        t0 = time.perf_counter()
        dec.start()
        dec.feed(utts[k][:end])
        dec.finish()
        times.append(time.perf_counter() - t0)
        _add(m, dec.stats)
    scale = len(ends) / len(sampled)
    m.wall_s = sum(times) * scale
    m.encoder_audio_s *= scale
    m.prefill_tokens = int(m.prefill_tokens * scale)
    m.decoded_tokens = int(m.decoded_tokens * scale)
    _quarters(m, times)
    m.steps = len(ends)
    m.extra["sampled_steps"] = len(sampled)
    return m


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def memory_session(engine: Any, minutes: float, seed: int = 3) -> dict[str, Any]:
    """Replay ``minutes`` of utterances (VAD + streaming decoder); RSS after each final."""
    from glmasr_live.asr.streaming import StreamingDecoder
    from glmasr_live.replay import replay

    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < minutes * 60 * SAMPLE_RATE:
        u = synth.word_utterance(
            synth.random_words(rng, int(rng.integers(4, 14)), False), synth.random_voice(rng), rng
        )
        pieces += [
            synth.set_level(u.audio, -26),
            np.zeros(int(rng.uniform(0.8, 2.0) * SAMPLE_RATE), np.float32),
        ]
        total += len(u.audio) + len(pieces[-1])
    audio = np.concatenate(pieces)
    gc.collect()
    samples = []
    dec = StreamingDecoder(engine)
    for ev in replay(audio, dec):
        if ev.type == "final":
            samples.append((ev.end, rss_mib()))
    first = [r for t, r in samples if t < 60] or [samples[0][1]]
    last = [r for t, r in samples if t > total / SAMPLE_RATE - 60.0] or [samples[-1][1]]
    out = {
        "minutes": total / SAMPLE_RATE / 60,
        "finals": len(samples),
        "rss_first_minute_mib": float(np.mean(first)),
        "rss_last_minute_mib": float(np.mean(last)),
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    from glmasr_live.asr.full import accelerator_peak_mib

    peak = accelerator_peak_mib(engine.device)
    if peak is not None:
        out["gpu_peak_mib"] = peak
    return out


def format_table(rows: list[Measure]) -> str:
    head = f"{'policy':<18}{'steps':>6}{'enc s/s':>9}{'prefill/s':>11}{'decoded/s':>11}{'wall s/s':>10}{'step ms first':>15}{'last':>8}{'max':>8}"
    lines = [head, "-" * len(head)]
    for m in rows:
        p = m.per_audio_second()
        lines.append(
            f"{m.policy:<18}{m.steps:>6}{p['encoder_s_per_s']:>9.2f}{p['prefill_tok_per_s']:>11.1f}"
            f"{p['decoded_tok_per_s']:>11.1f}{p['wall_s_per_s']:>10.3f}{m.step_ms_first:>15.1f}"
            f"{m.step_ms_last:>8.1f}{m.step_ms_max:>8.1f}"
        )
    return "\n".join(lines)


def to_json(rows: list[Measure], meta: dict[str, Any]) -> str:
    return json.dumps(
        {"meta": meta, "results": [{**asdict(m), "per_audio_second": m.per_audio_second()} for m in rows]},
        indent=1,
    )
