"""Benchmark of the whole live pipeline, with the demo model.

    python scripts/bench_pipeline.py [--utterances 12] [--idle-seconds 30] [--memory-minutes 30] [--json OUT]

1. End of speech -> final on the websocket: utterances with known word end times are replayed in
   real time through the real pipeline; a websocket client notes when each final arrives.
   The figure includes the segmenter's endpoint (0.2 s of clear pause; 0.5 s hangover otherwise).
2. CPU while idle-listening: the pipeline on real-time near-silence (no speech: the model does
   nothing) -- the process CPU time is everything except the model.
3. Memory over a long session: N minutes of utterances through the pipeline as fast as the model
   goes (partials kept, not skipped), RSS sampled from the stats events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from glmasr_live.config import PipelineSettings
from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE, PipelineStats
from glmasr_live.pipeline import LivePipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utterances(n: int, seed: int, pause: tuple[float, float] = (1.5, 2.5)) -> tuple[np.ndarray, list[float]]:
    """Audio of ``n`` held-out-voice utterances and the end time (s) of every word."""
    rng = np.random.default_rng(seed)
    pieces, pos = [np.zeros(SAMPLE_RATE // 2, np.float32)], SAMPLE_RATE // 2
    ends: list[float] = []
    for _ in range(n):
        u = synth.word_utterance(
            synth.random_words(rng, int(rng.integers(3, 9)), False), synth.random_voice(rng, True), rng
        )
        pieces.append(synth.set_level(u.audio, float(rng.uniform(-35, -22))))
        ends.extend((pos + b) / SAMPLE_RATE for _, b in u.spans)
        gap = np.zeros(int(rng.uniform(*pause) * SAMPLE_RATE), np.float32)
        pieces.append(gap)
        pos += len(u.audio) + len(gap)
    return np.concatenate(pieces), ends


def final_latency(n: int, tmp: Path) -> dict[str, float]:
    import websockets

    audio, ends = utterances(n, seed=5)
    path = tmp / "bench-utterances.wav"
    synth.write_wav(path, audio)
    port = free_port()
    arrivals: list[tuple[float, dict]] = []
    connected = threading.Event()

    async def client() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            connected.set()
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "final":
                    arrivals.append((time.monotonic(), msg))

    live = LivePipeline(
        PipelineSettings(input=str(path), realtime=True, model="demo", ws=f"127.0.0.1:{port}")
    )
    # the source starts last in start(): take the clock's origin right after it
    live.start()
    t0 = time.monotonic()
    th = threading.Thread(target=lambda: asyncio.run(client()), daemon=True)
    th.start()
    connected.wait(10)
    live.wait()
    live.stop()
    th.join(5)
    # The speech a final covers ends with the last word inside [start, end] of that final (the
    # VAD may split an utterance at a long pause: finals are matched by time, not by count).
    lat = []
    for arrived, msg in arrivals:
        inside = [e for e in ends if msg["start"] <= e <= msg["end"] + 0.05]
        if inside:
            lat.append(arrived - t0 - max(inside))
    return {"finals": len(arrivals), "utterances": n, "p50_s": float(np.percentile(lat, 50)),
            "p95_s": float(np.percentile(lat, 95)), "max_s": float(np.max(lat))}  # fmt: skip


def idle_cpu(seconds: float, tmp: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    path = tmp / "bench-idle.wav"
    synth.write_wav(path, synth.noise("pink", int(seconds * SAMPLE_RATE), rng) * 10 ** (-65 / 20))
    live = LivePipeline(
        PipelineSettings(input=str(path), realtime=True, model="demo", ws=f"127.0.0.1:{free_port()}")
    )
    live.start()  # model loaded and warmed up before the measurement starts
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    live.wait()
    r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    live.stop()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "seconds": w1 - w0,
        "cpu_share_of_one_core_pct": 100 * cpu / (w1 - w0),
        "model_steps": live.stream.policy.stats.steps,
    }


def memory(minutes: float, tmp: Path) -> dict[str, float]:
    n = int(minutes * 60 / 5.5) + 1
    audio, _ = utterances(n, seed=9, pause=(1.0, 2.0))
    path = tmp / "bench-long.wav"
    synth.write_wav(path, audio)
    samples: list[tuple[float, float]] = []

    def rss(item: object) -> None:
        if isinstance(item, PipelineStats) and (not samples or item.audio_clock - samples[-1][0] >= 30):
            with open("/proc/self/statm") as f:
                samples.append((item.audio_clock, int(f.read().split()[1]) * resource.getpagesize() / 2**20))

    live = LivePipeline(
        PipelineSettings(input=str(path), realtime=False, model="demo", ws=None, max_lag_s=1e9)
    )
    live.subscribe(rss)
    live.start()
    live.wait()
    live.stop()
    mid = [r for t, r in samples if t < 120]
    end = [r for t, r in samples if t > samples[-1][0] - 120]
    return {"minutes": len(audio) / SAMPLE_RATE / 60, "rss_first_2min_mib": float(np.mean(mid)),
            "rss_last_2min_mib": float(np.mean(end)), "rss_max_mib": max(r for _, r in samples),
            "finals": len(live.finals)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=12)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--memory-minutes", type=float, default=30.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    out: dict[str, object] = {}
    if args.utterances:
        out["end_of_speech_to_final"] = final_latency(args.utterances, args.tmp)
    if args.idle_seconds:
        out["idle_listening"] = idle_cpu(args.idle_seconds, args.tmp)
    if args.memory_minutes:
        out["memory"] = memory(args.memory_minutes, args.tmp)
    for section, values in out.items():
        print(section)
        for k, v in values.items():  # type: ignore[attr-defined]
            print(f"  {k:<28}{v:>10.3f}" if isinstance(v, float) else f"  {k:<28}{v:>10}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    sys.exit(0)


if __name__ == "__main__":
    main()
