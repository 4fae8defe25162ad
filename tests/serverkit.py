"""A real ``glmasr-live serve`` server in a thread of the test process (port 0, demo model),
and small clients of it. Shared by the server tests."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

SR = 16000


class RunningServer:
    """``with RunningServer(captioner, tmp_path) as srv:`` → ``srv.http(path)``, ``srv.ws(path)``."""

    def __init__(self, captioner: Any, transcripts: Path, **settings: Any) -> None:
        from glmasr_live.server.settings import ServerSettings

        self.settings = replace(ServerSettings(port=0, transcripts_dir=transcripts), **settings)
        self.captioner = captioner
        self.ctx: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from glmasr_live.server.app import ServerContext, serve

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.ctx = ServerContext(self.settings, self.captioner)
            await serve(self.ctx, ready=lambda _: self._ready.set())

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self._ready.set()

    def __enter__(self) -> RunningServer:
        self._thread.start()
        assert self._ready.wait(30), "server did not start"
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 60) -> None:
        """What SIGTERM does: finish every stream, close every client with 1001."""
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.ctx.stopping.set)
        self._thread.join(timeout)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self.ctx.port)

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def ingest(url: str, audio: np.ndarray, block_s: float = 0.1, pace: float = 0.0,
                 end: bool = True, encode: Any = pcm16) -> tuple[list[dict[str, Any]], Any]:  # fmt: skip
    """Send ``audio`` (16 kHz) to an ingest URL; every message received and the close frame."""
    import websockets

    block = int(SR * block_s)
    got: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:

        async def reader() -> None:
            async for msg in ws:
                got.append(json.loads(msg))

        task = asyncio.create_task(reader())
        for i in range(0, len(audio), block):
            await ws.send(encode(audio[i : i + block]))
            if pace:
                await asyncio.sleep(block_s / pace)
        if end:
            await ws.send(json.dumps({"type": "end"}))
        await task
        return got, (ws.close_code, ws.close_reason)
