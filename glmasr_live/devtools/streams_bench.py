"""``glmasr-live bench-streams``: how many live streams one model holds, batched and one at a time.

N streams (1, 2, 4, 8, ... ) each replay a different recording with known word times, paced in
real time (a feeder thread hands every stream its new audio every 30 ms, as capture would)
through the real scheduler thread and each stream's own policy. For each N and each scheduling
(``batched``: a round holds every due stream; ``single``: one step per round, the way a
one-model-per-loop server runs) the same recordings are replayed and measured:
word first shown after its audio ends (p50/p95), end of speech → final (p50/p95), the largest
lag any event carried and whether lag grew over the run, partials shed, and model compute per
second of audio. A scheduling *holds* N when p95 end of speech → final ≤ 1.0 s and lag did not
grow; the ratio of the largest N held, batched vs single, is the batching gain.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glmasr_live.devtools import synth
from glmasr_live.devtools.eval import WordSpan, caption_latency, percentiles
from glmasr_live.events import SAMPLE_RATE, CaptionEvent

FEED_S = 0.03  # the feeder's period: capture delivers audio in blocks of about this size
HOLD_FINAL_P95_S = 1.0
LAG_GROWTH_S = 0.5  # max lag in the second half of a run may exceed the first half's by this


@dataclass
class Recording:
    audio: np.ndarray
    words: list[WordSpan]


@dataclass
class RunRow:
    scheduling: str
    streams: int
    shown_p50: float | None = None
    shown_p95: float | None = None
    final_p50: float | None = None
    final_p95: float | None = None
    max_lag_s: float = 0.0
    lag_growth_s: float = 0.0
    shed_partials: int = 0
    finals: int = 0
    phrases: int = 0
    compute_per_audio_s: float = 0.0
    rows_per_round: float = 0.0
    kv_mib_per_stream: float = 0.0
    held: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def recordings(n: int, seconds: float, seed: int = 0) -> list[Recording]:
    """``n`` different recordings: phrases of random in-domain words by different voices, with
    pauses of 0.6-1.5 s (so utterances end and finals are due throughout)."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(seed * 1000 + k)
        voice = synth.random_voice(rng)
        pieces = [np.zeros(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE), np.float32)]
        words: list[WordSpan] = []
        pos = len(pieces[0])
        while pos < (seconds - 3.0) * SAMPLE_RATE:
            u = synth.word_utterance(synth.random_words(rng, int(rng.integers(3, 8)), False), voice, rng)
            for w, (a, b) in zip(u.words, u.spans, strict=True):
                words.append(WordSpan(w, (pos + a) / SAMPLE_RATE, (pos + b) / SAMPLE_RATE))
            pause = np.zeros(int(rng.uniform(0.6, 1.5) * SAMPLE_RATE), np.float32)
            pieces += [synth.set_level(u.audio, float(rng.uniform(-32, -22))), pause]
            pos += len(u.audio) + len(pause)
        tail = max(0, int(seconds * SAMPLE_RATE) - pos)
        out.append(Recording(np.concatenate([*pieces, np.zeros(tail, np.float32)]), words))
    return out


class _Clock:
    """A live stream's audio clock: seconds since its start. After the recording ends it runs on
    (as a listener's clock would) for a while, so a late final's lag is still measured."""

    RUN_ON_S = 5.0

    def __init__(self, t0: float, duration: float) -> None:
        self.t0, self.duration = t0, duration

    def now(self) -> float:
        return min(self.duration + self.RUN_ON_S, time.monotonic() - self.t0)

    def spent(self, seconds: float) -> None:
        pass


def start_phases(n: int, interval_s: float) -> list[float]:
    """Each stream's start after the common start, within one partial interval: real speakers'
    phases differ, so their partials fall due at different moments (the same for every run)."""
    rng = np.random.default_rng(n)
    return [float(rng.uniform(0, interval_s)) for _ in range(n)]


def run_streams(
    make_decoder: Any, recs: list[Recording], scheduling: str, interval_s: float, engine: Any
) -> RunRow:
    """Replay ``recs`` concurrently in real time through one scheduler; measure."""
    from glmasr_live.asr.rounds import slot_store
    from glmasr_live.asr.scheduler import Scheduler, SchedulerSettings
    from glmasr_live.policy import PolicySettings, StreamPolicy

    rows = 64 if scheduling == "batched" else 1
    sched = Scheduler(make_decoder, SchedulerSettings(max_rows=rows))
    events: list[list[CaptionEvent]] = [[] for _ in recs]
    t_base = time.monotonic() + 0.2
    starts = [t_base + p for p in start_phases(len(recs), interval_s)]
    handles = []
    for k, (rec, t0) in enumerate(zip(recs, starts, strict=True)):
        policy = StreamPolicy(settings=PolicySettings(interval_s=interval_s))
        h = sched.open(policy, _Clock(t0, len(rec.audio) / SAMPLE_RATE), events[k].extend, f"s{k}")
        h.decoder = make_decoder()
        handles.append(h)
    store = slot_store(engine)
    peak_kv = [0]
    sched.start()
    _feed_in_real_time(handles, recs, starts, store, peak_kv)
    for h in handles:
        h.finished.wait(120)
    sched.stop(10)
    audio_s = sum(len(r.audio) for r in recs) / SAMPLE_RATE
    return _measure(scheduling, recs, events, handles, sched, audio_s, peak_kv[0])


def _feed_in_real_time(
    handles: list[Any], recs: list[Recording], starts: list[float], store: Any, peak: list[int]
) -> None:
    pos = [0] * len(recs)
    tick = threading.Event()  # never set: the feeder's pacing, like a capture callback's period
    while any(p < len(r.audio) for p, r in zip(pos, recs, strict=True)):
        now = time.monotonic()
        for k, (h, rec, t0) in enumerate(zip(handles, recs, starts, strict=True)):
            if pos[k] >= len(rec.audio) or now < t0:
                continue
            upto = min(len(rec.audio), int((now - t0) * SAMPLE_RATE))
            if upto > pos[k]:
                h.feed(rec.audio[pos[k] : upto])
                pos[k] = upto
            if pos[k] >= len(rec.audio):
                h.end()
        peak[0] = max(peak[0], store.bytes)
        tick.wait(FEED_S)


def _measure(
    scheduling: str,
    recs: list[Recording],
    events: list[list[CaptionEvent]],
    handles: list[Any],
    sched: Any,
    audio_s: float,
    kv_bytes: int,
) -> RunRow:
    row = measure_events(RunRow(scheduling, len(recs)), recs, events)
    row.shed_partials = sum(h.policy.stats.shed_partials for h in handles)
    row.compute_per_audio_s = round(sched.stats.compute_s / audio_s, 4)
    row.rows_per_round = round(sched.stats.rows / max(1, sched.stats.rounds), 2)
    row.kv_mib_per_stream = round(kv_bytes / 2**20 / len(recs), 3)
    return row


def measure_events(row: RunRow, recs: list[Recording], events: list[list[CaptionEvent]]) -> RunRow:
    """Fill ``row``'s latency, lag, finals and held from each stream's events (times in that
    stream's own seconds, ``audio_clock`` = its live clock when the event was seen). Shared by
    the in-process and the network runs, so both are measured by the same rules."""
    shown: list[float] = []
    final: list[float] = []
    first_half, second_half = [0.0], [0.0]
    finals = phrases = 0
    for rec, evs in zip(recs, events, strict=True):
        lat = caption_latency(evs, rec.words, post_roll_s=0.0)
        shown += lat.shown
        final += lat.final
        half = len(rec.audio) / SAMPLE_RATE / 2
        for e in evs:
            (first_half if e.end < half else second_half).append(e.lag)
        finals += sum(1 for e in evs if e.type == "final" and e.text)
        phrases += _utterance_count(rec.words)
    row.shown_p50, row.shown_p95 = percentiles(shown).values()
    row.final_p50, row.final_p95 = percentiles(final).values()
    row.max_lag_s = round(max(first_half + second_half), 3)
    row.lag_growth_s = round(max(second_half) - max(first_half), 3)
    row.finals, row.phrases = finals, phrases
    row.held = (
        row.final_p95 is not None and row.final_p95 <= HOLD_FINAL_P95_S and row.lag_growth_s <= LAG_GROWTH_S
    )
    return row


def _utterance_count(words: list[WordSpan]) -> int:
    """Phrases in a recording: word runs separated by the recording's 0.6 s+ pauses."""
    return (
        1 + sum(1 for a, b in zip(words, words[1:], strict=False) if b.start - a.end >= 0.55) if words else 0
    )


def largest_held(rows: list[RunRow], scheduling: str) -> int:
    held = [r.streams for r in rows if r.scheduling == scheduling and r.held]
    return max(held, default=0)


def format_table(rows: list[RunRow]) -> str:
    head = (
        f"{'scheduling':<11}{'N':>4}{'shown p50':>10}{'p95':>7}{'final p50':>10}{'p95':>7}"
        f"{'max lag':>8}{'growth':>7}{'shed':>6}{'fin/phr':>9}{'compute/s':>10}{'rows/rnd':>9}{'held':>6}"
    )
    lines = [head, "-" * len(head)]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    for r in rows:
        lines.append(
            f"{r.scheduling:<11}{r.streams:>4}{f(r.shown_p50):>10}{f(r.shown_p95):>7}{f(r.final_p50):>10}"
            f"{f(r.final_p95):>7}{r.max_lag_s:>8.2f}{r.lag_growth_s:>7.2f}{r.shed_partials:>6}"
            f"{f'{r.finals}/{r.phrases}':>9}{r.compute_per_audio_s:>10.3f}{r.rows_per_round:>9.1f}"
            f"{'yes' if r.held else 'no':>6}"
        )
    return "\n".join(lines)


def to_json(rows: list[RunRow], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "results": [asdict(r) for r in rows]}, indent=1)
