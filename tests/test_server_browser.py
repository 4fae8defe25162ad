"""``glmasr-live serve``'s pages in a real headless Chromium: two browser microphones (fake
capture devices playing synthesized speech) into one room, read by a feed client, the room
page, the OBS overlay and the room's transcript files; a network drop between a microphone page
and the server (a TCP proxy of the test's own), which the page rides out without losing words."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets
from serverkit import SR, RunningServer
from test_overlay_browser import CHROMIUM, DevTools

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]

ROOM = "meet"


# ---- speech -------------------------------------------------------------------------------


@dataclass
class Speech:
    path: Path
    phrases: list[str]
    audio: np.ndarray
    end_s: float  # the end of the last word (file seconds)
    gap_s: float | None = None  # the middle of a pause inside the last phrase (file seconds)

    @property
    def words(self) -> list[str]:
        return " ".join(self.phrases).split()


def _speech(path: Path, phrases: list[list[str]], voice: Any, seed: int, pause_s: float,
            split_last: int | None = None) -> Speech:  # fmt: skip
    """1 s of quiet, then each phrase followed by ``pause_s`` (over a faint noise floor, as a
    real microphone has). ``split_last``: a 0.7 s pause after that many words of the last phrase."""
    from glmasr_live.devtools import synth

    rng = np.random.default_rng(seed)
    pieces, pos, gap, end = [np.zeros(SR, np.float32)], SR, None, 0.0
    for i, words in enumerate(phrases):
        last = i == len(phrases) - 1 and split_last is not None
        parts = [words[:split_last], words[split_last:]] if last else [words]
        for j, part in enumerate(parts):
            if j:
                gap = (pos + 0.35 * SR) / SR
                pieces.append(np.zeros(int(0.7 * SR), np.float32))
                pos += int(0.7 * SR)
            u = synth.word_utterance(part, voice, rng, gap_s=(0.06, 0.12), long_pause_p=0.0)
            pieces.append(synth.set_level(u.audio, -22))
            pos += len(u.audio)
        end = pos / SR
        pieces.append(np.zeros(int(pause_s * SR), np.float32))
        pos += int(pause_s * SR)
    audio = np.concatenate(pieces)
    audio = audio + (rng.standard_normal(len(audio)) * 10 ** (-62 / 20)).astype(np.float32)
    synth.write_wav(path, audio)
    return Speech(path, [" ".join(p) for p in phrases], audio, end, gap)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Speech]:
    from glmasr_live.devtools import synth

    d = tmp_path_factory.mktemp("mics")
    alice = [["hello", "seven", "three", "nine"], ["open", "blue", "please"]]
    bob = [["eight", "six", "one", "five"], ["green", "red", "up", "down"]]
    return {
        "Alice": _speech(d / "alice.wav", alice, synth.Voice("en-us", "m3", 150, 50), 1, 2.5),
        "Bob": _speech(d / "bob.wav", bob, synth.Voice("en", "f2", 150, 60), 2, 2.5, split_last=2),
    }


@pytest.fixture(scope="module")
def captioner(demo_engine):  # type: ignore[no-untyped-def]
    from glmasr_live.streams import Captioner

    cap = Captioner(engine=demo_engine)
    yield cap
    cap.close()


# ---- helpers ------------------------------------------------------------------------------


async def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll ``check`` (plain or async) until it returns something true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def words_of(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def in_order(got: list[str], want: list[str]) -> bool:
    """``want`` is a subsequence of ``got`` (extra words allowed, none missing)."""
    it = iter(got)
    return all(w in it for w in want)


class Feed:
    """A ``websockets`` reader of the room's captions feed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Feed:
        self.ws = await websockets.connect(self.url, max_size=None)
        self._task = asyncio.create_task(self._read())
        await until(lambda: self.events, "the feed's hello", 10)
        return self

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in self.ws:
                self.events.append(json.loads(msg))

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        if self._task is not None:
            await self._task

    def finals(self, speaker: str | None = None) -> list[dict[str, Any]]:
        out = [e for e in self.events if e["type"] == "final" and e["text"].strip()]
        return sorted(
            (e for e in out if speaker is None or e["speaker"] == speaker), key=lambda e: e["start"]
        )

    def words(self, speaker: str) -> list[str]:
        return words_of(" ".join(e["text"] for e in self.finals(speaker)))


class Chromium:
    """One headless Chromium (its fake microphone plays ``audio``); pages over DevTools."""

    def __init__(self, profile: Path, audio: Path | None = None) -> None:
        self.profile = profile
        self.audio = audio
        self.pages: list[DevTools] = []

    async def __aenter__(self) -> Chromium:
        fake = [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={self.audio}%noloop",
        ]
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--autoplay-policy=no-user-gesture-required", "--disable-background-timer-throttling",
             "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
             *(fake if self.audio else []), f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = self.profile / "DevToolsActivePort"
        await until(
            lambda: port_file.exists() and len(port_file.read_text().splitlines()) == 2, "chromium", 30
        )
        port, path = port_file.read_text().splitlines()
        self.endpoint = f"ws://127.0.0.1:{port}{path}"
        return self

    async def open(self, url: str, width: int = 960, height: int = 540) -> DevTools:
        """A new window showing ``url``, with a DevTools connection of its own."""
        tools = DevTools(await websockets.connect(self.endpoint, max_size=None, open_timeout=30))
        self.pages.append(tools)
        target = await tools.call("Target.createTarget", url="about:blank", newWindow=True)
        attached = await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        tools.session = attached["sessionId"]
        await tools.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await tools.call("Page.navigate", url=url)
        return tools

    async def __aexit__(self, *exc: object) -> None:
        for tools in self.pages:
            with contextlib.suppress(Exception):
                await tools.ws.close()
        self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass
class Tap:
    """What a browser sends on one proxied connection: its request line and, for an ingest
    socket, the s16le audio of its binary websocket frames (masked, maybe deflated)."""

    request: str = ""
    pcm: bytearray = field(default_factory=bytearray)
    _buf: bytearray = field(default_factory=bytearray)
    _upgraded: bool = False
    _inflate: Any = field(default_factory=lambda: zlib.decompressobj(-15))

    def feed(self, data: bytes) -> None:
        self._buf += data
        if not self._upgraded:
            head, sep, rest = bytes(self._buf).partition(b"\r\n\r\n")
            if not sep:
                return
            self.request = head.split(b"\r\n", 1)[0].decode("latin-1")
            self._buf, self._upgraded = bytearray(rest), True
        if "/v1/ingest" in self.request:
            while self._frame():
                pass

    def _frame(self) -> bool:
        b = self._buf
        if len(b) < 2:
            return False
        n, pos = b[1] & 0x7F, 2
        if n >= 126:
            width = 2 if n == 126 else 8
            if len(b) < 2 + width:
                return False
            n, pos = int.from_bytes(b[2 : 2 + width], "big"), 2 + width
        if len(b) < pos + 4 + n:
            return False
        mask = np.frombuffer(bytes(b[pos : pos + 4]), np.uint8)
        payload = (np.frombuffer(bytes(b[pos + 4 : pos + 4 + n]), np.uint8) ^ np.resize(mask, n)).tobytes()
        if b[0] & 0x0F == 2:  # a binary frame: audio
            if b[0] & 0x40:  # RSV1: permessage-deflate
                payload = self._inflate.decompress(payload + b"\x00\x00\xff\xff")
            self.pcm += payload
        del b[: pos + 4 + n]
        return True

    @property
    def rate(self) -> int:
        return int(re.search(r"sample_rate=(\d+)", self.request).group(1))  # type: ignore[union-attr]

    @property
    def seconds(self) -> float:
        """Audio forwarded on this connection."""
        return len(self.pcm) / 2 / self.rate

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.pcm[: len(self.pcm) // 2 * 2]), "<i2").astype(np.float32) / 32768


class Proxy:
    """A TCP proxy in front of the server that can cut every connection and refuse new ones."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.taps: list[Tap] = []
        self.refusing = False
        self.refused = 0
        self._links: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self.server.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cut(self) -> None:
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        tap = Tap()
        self.taps.append(tap)
        self._links |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer, tap), self._pipe(up_reader, writer, None))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, tap: Tap | None) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(1 << 16):
                if tap is not None:
                    tap.feed(data)
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
        self._links.discard(dst)


async def transcripts(base: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        out = {}
        for fmt in ("jsonl", "srt", "vtt", "txt"):
            async with http.get(f"{base}/v1/rooms/{ROOM}/transcript.{fmt}") as r:
                assert r.status == 200, (fmt, r.status)
                out[fmt] = await r.text()
        return out


async def page_finals(page: DevTools) -> list[dict[str, Any]]:
    return list(
        await page.js(
            "[...document.querySelectorAll('#history .final')].map(e => ({seq: +e.dataset.seq,"
            " speaker: e.querySelector('.speaker')?.textContent || '', text: e.querySelector('.text').textContent}))"
        )
    )


# ---- tests --------------------------------------------------------------------------------


def test_two_browser_microphones_into_one_room(
    tmp_path: Path, captioner: Any, voices: dict[str, Speech]
) -> None:
    """Alice and Bob talk at once from /mic pages; the feed, /rooms/meet, the overlay and the
    transcripts all show both, each labelled with the right speaker."""

    async def main(srv: RunningServer) -> None:
        async with (
            Feed(srv.ws(f"/v1/rooms/{ROOM}/captions")) as feed,
            Chromium(tmp_path / "alice", voices["Alice"].path) as alice,
            Chromium(tmp_path / "bob", voices["Bob"].path) as bob,
        ):
            room = await alice.open(srv.http(f"/rooms/{ROOM}"), 480, 170)
            overlay = await alice.open(srv.http(f"/overlay?room={ROOM}&speakers=1&lines=6&fade=0&size=20"))
            for page in (room, overlay):
                await page.wait_for("document.documentElement.dataset.state === 'open'", 30)
            mics = {
                "Alice": await alice.open(srv.http(f"/mic?room={ROOM}&name=Alice")),
                "Bob": await bob.open(srv.http(f"/mic?room={ROOM}&name=Bob")),
            }
            await _partials_at_once(room, overlay)
            await _scroll_up_when_full(room, feed)
            for name, speech in voices.items():
                await until(lambda s=speech, n=name: in_order(feed.words(n), s.words), f"{name}'s words", 90)
            await _check_pages(room, overlay, mics, feed, voices)
            for mic in mics.values():  # Stop: the page sends {"type":"end"}, the server closes
                await mic.js("document.getElementById('stop').click()")
            for mic in mics.values():
                await mic.wait_for("document.documentElement.dataset.state === 'ended'", 30)
            _check_transcripts(await transcripts(srv.http("")), voices)

    with RunningServer(captioner, tmp_path / "rooms") as srv:
        asyncio.run(main(srv))


async def _partials_at_once(room: DevTools, overlay: DevTools) -> None:
    """Both speakers talk at once: the room page and the overlay each show two live lines."""
    room_js = (
        "[...document.querySelectorAll('#live .partial .speaker')].map(e => e.textContent).sort().join()"
    )
    overlay_js = (
        "[...document.querySelectorAll('#current .partial .speaker')].map(e => e.textContent).sort().join()"
    )
    seen: set[str] = set()

    async def both() -> bool:
        if await room.js(room_js) == "Alice,Bob":
            seen.add("room")
        if await overlay.js(overlay_js) == "Alice: ,Bob: ":
            seen.add("overlay")
        return len(seen) == 2

    await until(both, "two speakers' partials at once", 60)


async def _scroll_up_when_full(room: DevTools, feed: Feed) -> None:
    """Once the history overflows, scroll it to the top: later finals must not move it."""
    overflow = "(h => h.scrollHeight > h.clientHeight + 30)(document.getElementById('history'))"
    await room.wait_for(overflow, 60)
    await room.js("document.getElementById('history').scrollTop = 0")
    shown = len(feed.finals())
    await until(lambda: len(feed.finals()) > shown, "a final after scrolling up", 60)
    await room.wait_for(f"document.querySelectorAll('#history .final').length > {shown}", 10)
    assert await room.js("document.getElementById('history').scrollTop") == 0, "the history jumped"
    assert await room.js("!document.getElementById('jump').hidden"), "no 'new captions' button"


async def _check_pages(room: DevTools, overlay: DevTools, mics: dict[str, DevTools], feed: Feed,
                       voices: dict[str, Speech]) -> None:  # fmt: skip
    finals = await room.wait_for(
        f"document.querySelectorAll('#history .final').length >= {len(feed.finals())}"
        " && [...document.querySelectorAll('#history .final')].length",
        20,
    )
    shown = await page_finals(room)
    assert len(shown) == finals == len({f["seq"] for f in shown})
    for name, speech in voices.items():
        said = words_of(" ".join(f["text"] for f in shown if f["speaker"] == name))
        assert in_order(said, speech.words), (name, shown)
        mic_text = words_of(await mics[name].text())
        assert in_order(mic_text, speech.words), (name, mic_text)  # the page's own captions
        assert await mics[name].js("document.documentElement.dataset.connects") == "1"
        level = await mics[name].js("parseFloat(document.getElementById('level').style.width)")
        assert level > 0, "the level meter never moved"
    hrefs = await room.js("[...document.querySelectorAll('#downloads a')].map(a => a.getAttribute('href'))")
    assert hrefs == [f"/v1/rooms/{ROOM}/transcript.{x}" for x in ("srt", "vtt", "txt", "jsonl")]
    text = await overlay.wait_for(
        "(t => t.includes('Alice: ') && t.includes('Bob: ') && t)(document.body.innerText)", 20
    )
    for name, speech in voices.items():
        lines = [line.removeprefix(f"{name}: ") for line in text.splitlines() if line.startswith(f"{name}: ")]
        assert in_order(words_of(" ".join(lines)), speech.words[-3:]), (name, text)


def _check_transcripts(files: dict[str, str], voices: dict[str, Speech]) -> None:
    rows = [json.loads(line) for line in files["jsonl"].splitlines() if line.strip()]
    for name, speech in voices.items():
        mine = [r for r in rows if r.get("speaker") == name]
        assert in_order(words_of(" ".join(r["text"] for r in mine)), speech.words), (name, rows)
        for fmt, label in (("srt", f"{name}: "), ("txt", f"{name}: "), ("vtt", f"<v {name}>")):
            said = [line.split(label, 1)[1] for line in files[fmt].splitlines() if label in line]
            assert in_order(words_of(" ".join(said)), speech.words), (fmt, name, files[fmt])
    assert files["vtt"].startswith("WEBVTT")
    assert {r.get("room") for r in rows} == {ROOM}


def test_microphone_page_rides_out_a_network_drop(
    tmp_path: Path, captioner: Any, voices: dict[str, Speech]
) -> None:
    """The proxy cuts Bob's page off in a pause mid-sentence and refuses it for a while: the
    page reconnects with resume_at, resends what the server had not acknowledged, and every
    word arrives. A second drop (after the speech) resumes from the right place again. The
    room page, behind the same proxy, reconnects too and shows each final once."""
    bob = voices["Bob"]
    assert bob.gap_s is not None

    async def main(srv: RunningServer) -> None:
        async with (
            Feed(srv.ws(f"/v1/rooms/{ROOM}/captions")) as feed,
            Proxy(srv.port) as proxy,
            Chromium(tmp_path / "bob", bob.path) as browser,
        ):
            room = await browser.open(proxy.url(f"/rooms/{ROOM}"))
            await room.wait_for("document.documentElement.dataset.state === 'open'", 30)
            mic = await browser.open(proxy.url(f"/mic?room={ROOM}&name=Bob"))
            first = await until(lambda: _ingest(proxy, 0), "the page's ingest socket")
            assert "resume_at" not in first.request
            (offset,) = await until(lambda: _offset(first, bob), "the speech's onset", 30)
            await until(lambda: first.seconds >= bob.gap_s + offset, "the pause to cut in", 30)
            proxy.refusing = True
            proxy.cut()
            await until(lambda: proxy.refused >= 2, "the page's retries", 30)
            proxy.refusing = False
            await mic.wait_for("document.documentElement.dataset.state === 'live'", 30)
            at1 = _resumed_at(await until(lambda: _ingest(proxy, 1), "a second ingest socket"), 0, first)
            # Acks count from each connection's resume point; resume_at stays on the stream's time.
            second = _ingest(proxy, 1)
            await until(lambda: at1 + second.seconds >= bob.end_s + offset + 1, "the end of the speech")
            proxy.cut()
            _resumed_at(await until(lambda: _ingest(proxy, 2), "a third ingest socket"), at1, second)
            await mic.wait_for("document.documentElement.dataset.state === 'live'", 30)
            assert int(await mic.js("document.documentElement.dataset.connects")) >= 3  # attempts
            await until(lambda: in_order(feed.words("Bob"), bob.words), "all of Bob's words", 90)
            await _check_room_after_drop(room, feed, proxy)
        files = await transcripts(srv.http(""))
        said = [line.split("Bob: ", 1)[1] for line in files["txt"].splitlines() if "Bob: " in line]
        assert in_order(words_of(" ".join(said)), bob.words), files["txt"]

    with RunningServer(captioner, tmp_path / "rooms") as srv:
        asyncio.run(main(srv))


def _ingest(proxy: Proxy, n: int) -> Tap | None:
    """The n-th ingest connection through the proxy, once its request has been seen."""
    taps = [t for t in proxy.taps if "/v1/ingest" in t.request]
    return taps[n] if len(taps) > n else None


def _offset(tap: Tap, speech: Speech) -> tuple[float] | None:
    """Stream seconds minus file seconds, from the first loud sample the page sent and the
    file's first loud sample (the fake capture starts playing before the page listens)."""
    loud = np.flatnonzero(np.abs(tap.samples) > 0.05)
    if not len(loud):
        return None
    return (loud[0] / tap.rate - int(np.flatnonzero(np.abs(speech.audio) > 0.05)[0]) / SR,)


def _resumed_at(tap: Tap, before: float, cut: Tap) -> float:
    """The reconnect's resume_at: after the previous one, at most where the cut was, and
    within the unacknowledged tail (not from the stream's start)."""
    assert "name=Bob" in tap.request
    resumed = re.search(r"resume_at=([0-9.]+)", tap.request)
    assert resumed, tap.request
    at = float(resumed.group(1))
    cut_s = before + cut.seconds
    assert before < at <= cut_s + 1e-3 and cut_s - at < 2.0, (before, at, cut_s)
    return at


async def _check_room_after_drop(room: DevTools, feed: Feed, proxy: Proxy) -> None:
    """The room page came back; its history is the feed's finals, each once."""
    await room.wait_for("document.documentElement.dataset.state === 'open'", 30)
    assert sum("/captions" in t.request for t in proxy.taps) >= 2, "the room page did not reconnect"
    want = [
        (e["seq"], e["speaker"], e["text"].strip()) for e in sorted(feed.finals(), key=lambda e: e["seq"])
    ]
    await room.wait_for(f"document.querySelectorAll('#history .final').length >= {len(want)}", 20)
    shown = [(f["seq"], f["speaker"], f["text"]) for f in await page_finals(room)]
    assert shown == want
