"""The room bus: replicas of ``glmasr-live serve`` share their rooms through Redis Streams.

Without ``--bus`` a room lives in one process (``rooms.py``). With it, every replica that has
a room open keeps a ``RoomLink``: its streams' events go *out* through the link (a Lua script
takes the room's next ``seq`` with INCR and XADDs the event, atomically, so the stream's
order is the room's order), and *every* event of the room, its own included, comes back *in*
through the replica's one reader (XREAD over all its open rooms) and ``Room.receive``, which
drops a seq it has already seen (exactly once per viewer), journals finals (each replica
keeps a complete copy of each room it serves) and fans out to the replica's viewers.

Keys, per room ``R`` (prefix ``glmasr-live:room:R:``): ``events`` (stream, partials and
finals, trimmed to ``EVENTS_MAXLEN``), ``finals`` (stream, finals only, ``FINALS_MAXLEN``:
late joiners' replay and a replica's catch-up of its journal), ``seq`` (the last seq taken),
``epoch`` (Redis time of the room clock's 0: every replica places streams on one clock),
``origins`` (hash: speaker -> where their first stream began, so a speaker may reconnect to
any replica with ``resume_at``).

Redis going away is not an error: readers and writers retry with backoff, events wait in
order, the rooms' viewers get a ``bus_down`` then ``bus_up`` status, and on reconnect each
room re-seeds ``seq``, ``epoch`` and ``origins`` (a Redis restarted without its data goes on
from where the replicas were).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from glmasr_live.events import CaptionEvent

if TYPE_CHECKING:
    from glmasr_live.server.rooms import Room

log = logging.getLogger(__name__)

PREFIX = "glmasr-live:room:"
EVENTS_MAXLEN = 2000
FINALS_MAXLEN = 10000
BLOCK_MS = 1000
BACKOFF = (0.1, 5.0)

# KEYS: seq, events, finals. ARGV: event JSON, type, events maxlen, finals maxlen.
PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
if ARGV[2] ~= 'status' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'ev', ARGV[1])
  if ARGV[2] == 'final' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'seq', seq, 'ev', ARGV[1])
  end
end
return seq
"""
# KEYS: seq. ARGV: the last seq this replica has seen; the key only ever grows.
SEED = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return cur
"""

DOWN: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
)  # plus redis.exceptions.RedisError, added at import


def redacted(url: str) -> str:
    """The bus URL as it may be logged: scheme, host, port and db; never a user or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def _chain(src: concurrent.futures.Future[None], dst: concurrent.futures.Future[None]) -> None:
    def done(f: concurrent.futures.Future[None]) -> None:
        if dst.done():
            return
        if f.exception() is not None:
            dst.set_exception(f.exception())  # type: ignore[arg-type]
        else:
            dst.set_result(None)

    src.add_done_callback(done)


class Bus:
    """One replica's connection to Redis: its state, its reader, a ``RoomLink`` per open room."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        global DOWN
        DOWN = (OSError, asyncio.TimeoutError, RedisError)
        self.where = redacted(url)
        password = None if urlsplit(url).password else os.environ.get("REDIS_PASSWORD") or None
        self.redis: Any = aioredis.from_url(
            url, password=password, decode_responses=True, socket_connect_timeout=2.0,
            socket_timeout=BLOCK_MS / 1000 + 5.0, health_check_interval=10,
        )  # fmt: skip
        self.publish_script = self.redis.register_script(PUBLISH)
        self.seed_script = self.redis.register_script(SEED)
        self.state = "connecting"
        self.links: dict[str, RoomLink] = {}
        self._reader: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- state ------------------------------------------------------------------------------

    def went_down(self, exc: BaseException) -> None:
        if self.state == "down":
            return
        was, self.state = self.state, "down"
        log.warning("room bus %s unreachable (%s); reconnecting with backoff", self.where, type(exc).__name__)
        if was == "up":
            for link in list(self.links.values()):
                link.down()
                link.room.notify("bus_down", "lost the room bus (Redis); other replicas' captions pause")

    def came_up(self) -> None:
        if self.state == "up":
            return
        was, self.state = self.state, "up"
        log.info("room bus %s connected", self.where)
        if was == "down":
            for link in list(self.links.values()):
                link.room.notify("bus_up", "room bus (Redis) reconnected; captions continue")

    # -- rooms ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader now, so ``state`` (and ``/healthz``) tells whether Redis answers
        even before the replica has a room open."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    def link(self, room: Room) -> RoomLink:
        link = RoomLink(self, room)
        self.links[room.name] = link
        self.start()
        self._wake.set()
        return link

    def unlink(self, link: RoomLink) -> None:
        if self.links.get(link.room.name) is link:
            del self.links[link.room.name]
        link.close()

    async def _read(self) -> None:
        """The replica's one reader: XREAD every attached room's events, in each room's order."""
        delay = BACKOFF[0]
        while True:
            try:
                for link in list(self.links.values()):
                    if not link.ready.is_set():
                        await link.attach()
                streams = {lk.keys["events"]: lk.last_id for lk in self.links.values() if lk.ready.is_set()}
                if not streams:  # no room to read: still see whether Redis answers
                    self._wake.clear()
                    await self.redis.ping()
                    self.came_up()
                    delay = BACKOFF[0]
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), BLOCK_MS / 1000)
                    continue
                answer = await self.redis.xread(streams, count=500, block=BLOCK_MS)
                self.came_up()
                delay = BACKOFF[0]
                for key, entries in answer or ():
                    target = self.links.get(key[len(PREFIX) : -len(":events")])
                    if target is not None:
                        target.take(entries)
            except DOWN as exc:
                self.went_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])

    async def close(self) -> None:
        for link in list(self.links.values()):
            self.unlink(link)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await self.redis.aclose()


class RoomLink:
    """One room's side of the bus on this replica: its writer (events out, in order) and what
    the reader hands it (events in); journal futures of this replica's own finals."""

    def __init__(self, bus: Bus, room: Room) -> None:
        self.bus = bus
        self.room = room
        self.keys = {k: f"{PREFIX}{room.name}:{k}" for k in ("events", "finals", "seq", "epoch", "origins")}
        self.last_id = "0-0"
        self._attached = False
        self.ready = asyncio.Event()  # attached: clock, seq, origins and recent finals in
        self._out: asyncio.Queue[tuple[CaptionEvent, Callable[[CaptionEvent], None], Any]] = asyncio.Queue()
        self._waiting: dict[int, concurrent.futures.Future[None]] = {}
        self._written: OrderedDict[int, concurrent.futures.Future[None]] = OrderedDict()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    # -- attach (and re-attach after Redis came back) -------------------------------------------

    async def attach(self) -> None:
        r, room = self.bus.redis, self.room
        top = await r.xrevrange(self.keys["events"], "+", "-", count=1)
        top_id = top[0][0] if top else None
        if not self._attached:
            self.last_id = top_id or "0-0"  # what came before is in the finals stream
        elif top_id is None or _id(top_id) < _id(self.last_id):
            self.last_id = "0-0"  # the stream was reset (Redis restarted without its data)
        await self.seed()
        for ev in await self._finals_since(room.next_seq):
            self._journal(ev)
        self._attached = True
        self.ready.set()
        self.bus.came_up()

    async def seed(self) -> None:
        """Agree with Redis on the room's seq, clock and speakers' origins (first one wins)."""
        r, room = self.bus.redis, self.room
        await self.bus.seed_script(keys=[self.keys["seq"]], args=[room.next_seq - 1])
        sec, usec = await r.time()
        redis_now = sec + usec / 1e6
        await r.set(self.keys["epoch"], repr(redis_now - room.now()), nx=True)
        epoch = float(await r.get(self.keys["epoch"]))
        room.set_clock(redis_now - epoch)
        for speaker, origin in room.origins.items():
            await r.hsetnx(self.keys["origins"], speaker, repr(origin))
        room.origins.update({k: float(v) for k, v in (await r.hgetall(self.keys["origins"])).items()})

    async def _finals_since(self, seq: int) -> list[CaptionEvent]:
        """The room's finals from ``seq`` on that the finals stream still holds, oldest first."""
        out: list[CaptionEvent] = []
        upper = "+"
        while True:
            chunk = await self.bus.redis.xrevrange(self.keys["finals"], upper, "-", count=200)
            for entry_id, fields in chunk:
                if int(fields["seq"]) < seq:
                    return out[::-1]
                out.append(self._event(fields))
                upper = f"({entry_id}"
            if len(chunk) < 200:
                return out[::-1]

    async def speaker_origin(self, speaker: str) -> None:
        """Fetch where ``speaker``'s first stream began (they may have started on another replica)."""
        with contextlib.suppress(*DOWN):
            origin = await self.bus.redis.hget(self.keys["origins"], speaker)
            if origin is not None:
                self.room.origins[speaker] = float(origin)

    def down(self) -> None:
        self.ready.clear()

    # -- in: from the reader --------------------------------------------------------------

    @staticmethod
    def _event(fields: dict[str, str]) -> CaptionEvent:
        return replace(CaptionEvent.from_json(fields["ev"]), seq=int(fields["seq"]))

    def take(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        for entry_id, fields in entries:
            self.last_id = entry_id
            self._journal(self._event(fields))

    def _journal(self, ev: CaptionEvent) -> None:
        written = self.room.receive(ev)
        if written is None:
            return
        waiting = self._waiting.pop(ev.seq, None)
        if waiting is not None:
            _chain(written, waiting)
        else:
            self._written[ev.seq] = written
            while len(self._written) > 1000:
                self._written.popitem(last=False)

    # -- out: this replica's streams' events ------------------------------------------------

    def publish(
        self, ev: CaptionEvent, deliver: Callable[[CaptionEvent], None]
    ) -> concurrent.futures.Future[None] | None:
        """Queue a stream's event; ``deliver`` gets it once the room numbered it. For a final,
        the future completes once this replica's journal has it."""
        written: concurrent.futures.Future[None] | None = (
            concurrent.futures.Future() if ev.type == "final" else None
        )
        self._out.put_nowait((ev, deliver, written))
        return written

    def note_origin(self, speaker: str, origin: float) -> None:
        async def push() -> None:
            with contextlib.suppress(*DOWN):
                await self.bus.redis.hsetnx(self.keys["origins"], speaker, repr(origin))

        self.bus_task(push())

    def bus_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _write(self) -> None:
        while True:
            ev, deliver, written = await self._out.get()
            seq = await self._send(ev)
            numbered = replace(ev, seq=seq)
            if written is not None:
                done = self._written.pop(seq, None)
                if done is not None:
                    _chain(done, written)
                else:
                    self._waiting[seq] = written
            deliver(numbered)

    async def _send(self, ev: CaptionEvent) -> int:
        """XADD one event (retrying, in order, while Redis is away); its room seq."""
        delay = BACKOFF[0]
        while True:
            if not self.ready.is_set():
                await self.ready.wait()
            try:
                args: list[str | int] = [ev.to_json(), ev.type, EVENTS_MAXLEN, FINALS_MAXLEN]
                keys = [self.keys["seq"], self.keys["events"], self.keys["finals"]]
                return int(await self.bus.publish_script(keys=keys, args=args))
            except DOWN as exc:
                self.bus.went_down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])

    def close(self) -> None:
        self._writer.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the room closed before its bus returned the final"))
