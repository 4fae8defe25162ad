"""``glmasr-live bench-streams --network``: the same live streams, through a real server.

For each N, the recordings, start phases and real-time pacing of the in-process run are pushed
by N websocket clients into ``glmasr-live serve`` (``ServerContext`` + ``serve`` on
127.0.0.1:0, its own event loop thread, one ``Captioner`` on the same engine), while M viewer
sockets per room read the room's feed. Everything is measured at the clients:

- **The clock.** A speaker client sends, at wall time ``t0 + (k+1)·frame``, the audio captured
  by then (``frame`` of s16le, 30 ms by default like the in-process feeder; a late wake-up sends
  all that is due). Its live clock at wall time ``t`` is ``t - t0`` (capped as in-process, 5 s
  after the recording). Every message a client receives is stamped with that clock on arrival,
  so "end of speech → final" is the final's arrival on the speaker's clock minus the end of
  the last word it covers: the same ``caption_latency`` as in-process, with the emission clock
  replaced by the arrival clock. ``lag`` is likewise the arrival clock minus the event's end.
- **Room times to stream times.** Event times are on the room clock; a stream is placed on it
  when it connects. Speakers connect (and viewers only after them), so the first stream of a
  room opened it and its offset is 0 (to microseconds). A later stream of the same room
  (``--streams-per-room`` > 1) gets offset = its hello's arrival minus the room's first hello's
  arrival, both sent straight after the placement: off by the difference of two loopback
  deliveries (milliseconds), against finals' ends that carry the segmenter's post-roll. A hello
  that carries ``offset`` (the stream's second 0 on the room clock) is used as it is.
- **Viewers.** A viewer's delay is its arrival time of an event minus the speaker socket's
  arrival time of the same event (same room ``seq``): what fan-out adds. Viewers must get every
  final of their room (``viewer_finals_lost``).

Where the cost lands: the clients run in one thread with their own event loop, in this process.
So they share the two cores and the GIL with the server's loop and the scheduler thread, and
the network rows are an upper bound on the server's own cost. The clients' CPU time (thread
time), the server loop's and the whole process's are reported per second of audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glmasr_live.devtools.eval import caption_latency, percentiles
from glmasr_live.devtools.streams_bench import FEED_S, Recording, RunRow, _Clock, measure_events, start_phases
from glmasr_live.events import SAMPLE_RATE, CaptionEvent
from glmasr_live.streams import Captioner

CONNECT_TIMEOUT_S = 30.0
DONE_TIMEOUT_S = 120.0
_TYPE = re.compile(r'"type"\s*:\s*"(\w+)"')
VIEWER_GRACE_S = 10.0  # after the speakers' sockets close, for the viewers' last finals


@dataclass(frozen=True)
class NetworkPlan:
    viewers: int = 2  # viewer sockets per room
    per_room: int = 1  # speaker streams per room; ceil(N / per_room) rooms
    frame_s: float = FEED_S


@dataclass
class _Client:
    room: str
    rec: Recording | None = None  # a speaker's recording; None for a viewer
    base: str = ""  # a viewer's server, when not the speakers' (another replica: the bus bench)
    ws: Any = None
    stream_id: str = ""
    hello_t: float = 0.0
    offset: float = 0.0
    t0: float = 0.0
    frames: int = 0
    sent_bytes: int = 0
    got: list[tuple[float, str]] = field(default_factory=list)  # (arrival, raw): parsed later
    close_code: int | None = None

    def clock(self, t: float) -> float:
        assert self.rec is not None
        return min(len(self.rec.audio) / SAMPLE_RATE + _Clock.RUN_ON_S, t - self.t0)


class BenchCaptioner(Captioner):
    """A ``Captioner`` that keeps its streams, so the run can read their policies' shed counts."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.opened: list[Any] = []

    def open_stream(self, *args: Any, **kw: Any) -> Any:
        s = super().open_stream(*args, **kw)
        self.opened.append(s)
        return s


class BenchServer:
    """The real server in a thread with its own event loop (``with BenchServer(...) as srv``)."""

    def __init__(self, captioner: Any, transcripts: Path, max_streams: int, per_room: int,
                 bus: str | None = None) -> None:  # fmt: skip
        from glmasr_live.server.settings import ServerSettings

        self.settings = ServerSettings(
            host="127.0.0.1", port=0, transcripts_dir=transcripts, max_streams=max(64, max_streams),
            max_streams_per_room=max(16, per_room), max_rooms=max(256, max_streams), bus=bus,
        )  # fmt: skip
        self.captioner = captioner
        self.ctx: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from glmasr_live.server.app import ServerContext, serve

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.ctx = ServerContext(self.settings, self.captioner)
            await serve(self.ctx, ready=lambda _: self._ready.set())

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - raised again in the bench's thread
            self.error = exc
            self._ready.set()

    def __enter__(self) -> BenchServer:
        self._thread.start()
        if not self._ready.wait(CONNECT_TIMEOUT_S) or self.error is not None:
            raise RuntimeError(f"the benchmark's server did not start: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.ctx.stopping.set)
        self._thread.join(60)

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.ctx.port}"

    def loop_cpu(self) -> float:
        """CPU seconds the server's event loop thread has used (read on that thread)."""

        async def read() -> float:
            return time.thread_time()

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(10)


@dataclass(frozen=True)
class _Counters:
    """The server's running totals at one moment; a run's figures are differences of two."""

    streams: int
    compute_s: float
    rows: int
    rounds: int
    loop_cpu: float
    process_cpu: float

    @classmethod
    def take(cls, server: BenchServer) -> _Counters:
        st = server.captioner.scheduler.stats
        return cls(
            len(server.captioner.opened),
            st.compute_s,
            st.rows,
            st.rounds,
            server.loop_cpu(),
            time.process_time(),
        )


def run_network(server: BenchServer, recs: list[Recording], interval_s: float, plan: NetworkPlan,
                engine: Any, tag: str, viewer_bases: list[str] | None = None) -> RunRow:  # fmt: skip
    """Replay ``recs`` through ``server`` in real time from client sockets; measure at the clients.
    ``viewer_bases``: ``plan.viewers`` per room on each of these servers (replicas sharing the
    rooms), with figures per server in ``extra["viewers_at"]``; default: on ``server``."""
    from glmasr_live.asr.rounds import slot_store

    cap = server.captioner
    speakers = [_Client(f"{tag}-r{k // plan.per_room}", rec) for k, rec in enumerate(recs)]
    rooms = sorted({s.room for s in speakers})
    bases = viewer_bases or [server.base]
    viewers = [_Client(room, base=b) for room in rooms for b in bases for _ in range(plan.viewers)]
    before = _Counters.take(server)
    out: dict[str, Any] = {}
    thread = threading.Thread(
        target=_client_thread, args=(server.base, speakers, viewers, plan, interval_s, out),
        name="bench-clients", daemon=True,
    )  # fmt: skip
    store, peak = slot_store(engine), 0
    thread.start()
    while thread.is_alive():  # the KV store's peak, sampled like the in-process feeder does
        peak = max(peak, store.bytes)
        thread.join(FEED_S)
    if "error" in out:
        raise out["error"]
    audio_s = sum(len(r.audio) for r in recs) / SAMPLE_RATE
    row = measure_events(
        RunRow("network", len(recs)), recs, [[ev for _, ev in _events(s, s)] for s in speakers]
    )
    now = _Counters.take(server)
    row.shed_partials = sum(s.stats.shed_partials for s in cap.opened[before.streams :])
    row.compute_per_audio_s = round((now.compute_s - before.compute_s) / audio_s, 4)
    row.rows_per_round = round((now.rows - before.rows) / max(1, now.rounds - before.rounds), 2)
    row.kv_mib_per_stream = round(peak / 2**20 / len(recs), 3)
    cpu = {
        "client_cpu_per_audio_s": out["client_cpu"] / audio_s,
        "server_loop_cpu_per_audio_s": (now.loop_cpu - before.loop_cpu) / audio_s,
        "process_cpu_per_audio_s": (now.process_cpu - before.process_cpu) / audio_s,
    }
    row.extra = _network_extra(speakers, viewers, plan, rooms, audio_s, cpu)
    if viewer_bases:
        row.extra["viewers_at"] = {
            b: _viewer_figures(speakers, [v for v in viewers if v.base == b]) for b in bases
        }
    return row


def _client_thread(base: str, speakers: list[_Client], viewers: list[_Client], plan: NetworkPlan,
                   interval_s: float, out: dict[str, Any]) -> None:  # fmt: skip
    # Its own thread and loop: the load generator never runs on the server's loop.
    cpu0 = time.thread_time()
    try:
        asyncio.run(_drive(base, speakers, viewers, plan, interval_s))
    except BaseException as exc:  # noqa: BLE001 - raised again in the bench's thread
        out["error"] = exc
    out["client_cpu"] = time.thread_time() - cpu0


async def _drive(base: str, speakers: list[_Client], viewers: list[_Client], plan: NetworkPlan,
                 interval_s: float) -> None:  # fmt: skip
    import websockets

    for k, sp in enumerate(speakers):  # speakers first: a room's first stream opens it (offset 0)
        url = f"{base}/v1/ingest?encoding=s16le&sample_rate={SAMPLE_RATE}&room={sp.room}&name=speaker{k}"
        sp.ws = await websockets.connect(url, max_size=None, open_timeout=CONNECT_TIMEOUT_S)
        hello = json.loads(await sp.ws.recv())
        sp.hello_t, sp.stream_id = time.monotonic(), hello["stream"]
        sp.offset = hello.get("offset", -1.0)  # exact, where a server's hello says it
    first: dict[str, float] = {}
    for sp in speakers:
        if sp.offset < 0:  # else estimated: see the module docstring
            sp.offset = sp.hello_t - first.setdefault(sp.room, sp.hello_t)
    for v in viewers:
        v.ws = await websockets.connect(f"{v.base or base}/v1/rooms/{v.room}/captions", max_size=None)
        await v.ws.recv()  # the room's hello (no finals yet)
    readers = [asyncio.create_task(_read(c)) for c in speakers]
    watchers = [asyncio.create_task(_read(c)) for c in viewers]
    pcm = [
        (np.clip(sp.rec.audio, -1, 1) * 32767).astype("<i2").tobytes()
        for sp in speakers
        if sp.rec is not None
    ]
    t_base = time.monotonic() + 0.2
    for sp, phase in zip(speakers, start_phases(len(speakers), interval_s), strict=True):
        sp.t0 = t_base + phase
    await asyncio.gather(*(_send(sp, data, plan.frame_s) for sp, data in zip(speakers, pcm, strict=True)))
    await asyncio.wait_for(asyncio.gather(*readers), DONE_TIMEOUT_S)  # closed after each last final
    await _let_viewers_finish(speakers, viewers)
    await asyncio.gather(*watchers)


async def _send(sp: _Client, pcm: bytes, frame_s: float) -> None:
    n, frame, pos = len(pcm) // 2, max(1, int(frame_s * SAMPLE_RATE)), 0
    while pos < n:
        await _sleep_until(sp.t0 + min(n, pos + frame) / SAMPLE_RATE)
        upto = min(n, max(pos + frame, int((time.monotonic() - sp.t0) * SAMPLE_RATE)))
        chunk = pcm[2 * pos : 2 * upto]
        await sp.ws.send(chunk)
        sp.frames, sp.sent_bytes, pos = sp.frames + 1, sp.sent_bytes + len(chunk), upto
    await sp.ws.send(json.dumps({"type": "end"}))


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _read(c: _Client) -> None:
    import websockets

    # Only the arrival time is taken here; parsing waits until the run is over.
    with contextlib.suppress(websockets.ConnectionClosed):
        async for msg in c.ws:
            c.got.append((time.monotonic(), msg if isinstance(msg, str) else msg.decode()))
    c.close_code = c.ws.close_code


async def _let_viewers_finish(speakers: list[_Client], viewers: list[_Client]) -> None:
    """Close each viewer once it holds as many finals as its room's speakers got (or later)."""

    def finals(c: _Client) -> int:
        return sum(_kind(raw) == "final" for _, raw in c.got)

    want = {v.room: sum(finals(s) for s in speakers if s.room == v.room) for v in viewers}
    deadline = time.monotonic() + VIEWER_GRACE_S
    while time.monotonic() < deadline and any(finals(v) < want[v.room] for v in viewers):
        await asyncio.sleep(0.05)
    await asyncio.gather(*(v.ws.close() for v in viewers))


def _kind(raw: str) -> str:
    """A message's ``type`` without parsing all of it (an escaped quote in a text cannot match)."""
    m = _TYPE.search(raw)
    return m.group(1) if m else ""


def _events(c: _Client, speaker: _Client, stream_id: str | None = None) -> list[tuple[float, CaptionEvent]]:
    """Client ``c``'s caption events (of ``stream_id`` only, when given) with their arrival
    times, moved onto ``speaker``'s own seconds: ``audio_clock`` and ``lag`` at arrival."""
    out = []
    for t, raw in c.got:
        d = json.loads(raw)
        if d.get("type") not in ("partial", "final", "status") or (
            stream_id and d.get("stream") != stream_id
        ):
            continue
        ev = CaptionEvent.from_dict(d)
        clock, end = speaker.clock(t), ev.end - speaker.offset
        out.append(
            (t, replace(ev, start=ev.start - speaker.offset, end=end, audio_clock=clock, lag=clock - end))
        )
    return out


def _viewer_figures(speakers: list[_Client], viewers: list[_Client]) -> dict[str, Any]:
    final: list[float] = []
    delay: list[float] = []
    lost = 0
    for sp in speakers:
        assert sp.rec is not None
        mine = _events(sp, sp)
        at_speaker = {ev.seq: t for t, ev in mine}  # the room's seq: the same event on both sockets
        want = sum(ev.type == "final" for _, ev in mine)
        for v in (v for v in viewers if v.room == sp.room):
            seen = _events(v, sp, sp.stream_id)
            final += caption_latency([ev for _, ev in seen], sp.rec.words, post_roll_s=0.0).final
            delay += [t - at_speaker[ev.seq] for t, ev in seen if ev.seq in at_speaker]
            lost += max(0, want - sum(ev.type == "final" for _, ev in seen))
    f = percentiles(final)
    # In milliseconds, unrounded by ``percentiles``: on loopback the fan-out is sub-millisecond.
    d = np.percentile(np.asarray(delay) * 1000, [50, 95, 100]).round(3).tolist() if delay else [None] * 3
    return {
        "viewer_final_p50": f["p50"], "viewer_final_p95": f["p95"], "viewer_delay_ms_p50": d[0],
        "viewer_delay_ms_p95": d[1], "viewer_delay_ms_max": d[2], "viewer_finals_lost": lost,
    }  # fmt: skip


def _network_extra(speakers: list[_Client], viewers: list[_Client], plan: NetworkPlan, rooms: list[str],
                   audio_s: float, cpu: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    return {
        "rooms": len(rooms), "viewers": len(viewers), "streams_per_room": plan.per_room,
        "frame_ms": round(plan.frame_s * 1000, 1),
        "frames_sent": sum(s.frames for s in speakers),
        "bytes_sent": sum(s.sent_bytes for s in speakers),
        "speaker_messages": sum(len(s.got) for s in speakers),
        "viewer_messages": sum(len(v.got) for v in viewers),
        "acks": sum(_kind(raw) == "ack" for s in speakers for _, raw in s.got),
        "close_codes": sorted({s.close_code for s in speakers}, key=str),
        **_viewer_figures(speakers, viewers),
        **{k: round(v, 4) for k, v in cpu.items()},
    }  # fmt: skip


def compare(local: RunRow, net: RunRow) -> dict[str, Any]:
    """Network / in-process ratios of the same N measured in the same run (None: no ratio)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(b / a, 2) if a and b is not None else None

    keys = ("shown_p50", "shown_p95", "final_p50", "final_p95", "max_lag_s", "compute_per_audio_s")
    out: dict[str, Any] = {k: ratio(getattr(local, k), getattr(net, k)) for k in keys}
    out["finals_in_process"], out["finals_network"] = local.finals, net.finals
    out["finals_equal"] = local.finals == net.finals
    cpu_local = local.extra.get("process_cpu_per_audio_s")
    out["process_cpu"] = ratio(cpu_local, net.extra.get("process_cpu_per_audio_s"))
    return out


def transcripts_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="glmasr-bench-rooms-")


def format_network_table(pairs: list[tuple[RunRow, RunRow]]) -> str:
    """In-process and network side by side for each N, with the network / in-process ratio."""

    def f(v: float | None, w: int = 6, digits: int = 2) -> str:
        return f"{'-' if v is None else f'{v:.{digits}f}':>{w}}"

    head = (
        f"{'N':>4}{'rooms':>6}{'viewers':>8} | {'final p95 in':>12}{'net':>6}{'x':>6} | "
        f"{'shown p95 in':>12}{'net':>6}{'x':>6} | {'viewer fin p95':>14}{'+delay p95 ms':>14} | "
        f"{'finals in/net':>13}{'lost':>5} | {'frames':>7}{'MiB':>6} | {'cpu/s in':>8}{'net':>7}{'client':>7}"
    )
    lines = [head, "-" * len(head)]
    for a, b in pairs:
        x, e = b.extra.get("vs_in_process", {}), b.extra
        lines.append(
            f"{b.streams:>4}{e['rooms']:>6}{e['viewers']:>8} | {f(a.final_p95, 12)}{f(b.final_p95)}{f(x.get('final_p95'))} | "
            f"{f(a.shown_p95, 12)}{f(b.shown_p95)}{f(x.get('shown_p95'))} | {f(e['viewer_final_p95'], 14)}"
            f"{f(e['viewer_delay_ms_p95'], 14)} | {f'{a.finals}/{b.finals}':>13}{e['viewer_finals_lost']:>5} | "
            f"{e['frames_sent']:>7}{e['bytes_sent'] / 2**20:>6.1f} | "
            f"{f(a.extra.get('process_cpu_per_audio_s'), 8, 3)}{f(e['process_cpu_per_audio_s'], 7, 3)}"
            f"{f(e['client_cpu_per_audio_s'], 7, 3)}"
        )
    return "\n".join(lines)
