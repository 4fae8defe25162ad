"""A real ``glmasr-live serve`` server in a thread of the test process (port 0, demo model), the
same as a process of its own (``ServeProcess``), and small clients of them. Shared by the
server tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
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


class ServeProcess:
    """``glmasr-live serve`` as a user runs it, in a process of its own on a free loopback port.

    Its stderr is read to the end by a thread (the announcement gives the port; a full pipe
    would stall the server). ``XDG_CONFIG_HOME`` points into ``home``, so no ``serve.toml`` of
    the machine's user is read."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "glmasr_live", "serve", "--ws", "127.0.0.1:0", *args]
        env = {"PYTHONUNBUFFERED": "1", "XDG_CONFIG_HOME": str(home / "xdg"), **(env or {})}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        self.lines: list[str] = []
        self.port = 0
        self._announced = threading.Event()
        self._reader = threading.Thread(target=self._read, name="serve-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                self.port = int(m.group(1))
            if "audio in:" in line:  # the announcement's last line
                self._announced.set()
        self._announced.set()  # the process ended (a failed start shows in ``lines``)

    def started(self, timeout: float = 120) -> ServeProcess:
        assert self._announced.wait(timeout) and self.port, "serve did not start: " + self.stderr
        return self

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed beyond what was already fsynced."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the exit code; the whole of stderr is in ``lines`` after this."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(30)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
