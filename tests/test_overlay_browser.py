"""The OBS overlay in a real headless Chromium, driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from glmasr_live.captions.broadcast import BroadcastSettings, CaptionServer
from glmasr_live.events import CaptionEvent

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


class DevTools:
    """Minimal CDP client: one page target, attached with a flat session."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    async def js(self, expression: str) -> Any:
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}; page text: {await self.text()}")
            await asyncio.sleep(0.1)

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def screenshot(self, path: Path) -> list[list[int]]:
        r = await self.call("Page.captureScreenshot", format="png")
        data = base64.b64decode(r["data"])
        path.write_bytes(data)
        return png_alpha(data)


def png_alpha(png: bytes) -> list[list[int]]:
    """Alpha channel of an 8-bit RGBA PNG (what Chromium writes), as rows of ints."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 6), "expected RGBA8"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, bpp, stride = zlib.decompress(idat), 4, width * 4
    rows: list[list[int]] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(list(line[3::4]))
        prev = line
    return rows


# Where each rendered line of an element begins, as offsets into its text: a character whose
# box sits lower than the previous one by more than half its height begins a new line.
LINE_STARTS = """(() => {
  const walker = document.createTreeWalker(document.querySelector('SELECTOR'), NodeFilter.SHOW_TEXT);
  const starts = [];
  let top = -Infinity, offset = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const r = range.getClientRects()[0];
      if (!r || r.width === 0 || !node.data[i].trim()) continue;
      if (r.top > top + r.height / 2) { starts.push(offset + i); top = r.top; }
    }
    offset += node.length;
  }
  return starts;
})()"""


def ev(seq: int, kind: str, committed: str, tentative: str = "") -> CaptionEvent:
    text = committed + (" " + tentative if tentative else "")
    return CaptionEvent(kind, seq, seq // 10, 0.0, 1.0, committed, tentative, text, 1.0, time.time())  # type: ignore[arg-type]


async def _open_page(profile: Path, url: str) -> tuple[subprocess.Popen[bytes], DevTools]:
    chrome = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=960,540",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and len(port_file.read_text().splitlines()) == 2:
            break
        await asyncio.sleep(0.1)
    port, path = port_file.read_text().splitlines()
    ws = await connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30)
    tools = DevTools(ws)
    target = await tools.call("Target.createTarget", url="about:blank")
    tools.session = (await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))[
        "sessionId"
    ]
    # OBS composites the page over video: keep the canvas transparent in the screenshot too.
    await tools.call("Emulation.setDefaultBackgroundColorOverride", color={"r": 0, "g": 0, "b": 0, "a": 0})
    await tools.call("Page.navigate", url=url)
    return chrome, tools


def test_overlay_shows_captions_reconnects_and_wraps_cjk(tmp_path: Path) -> None:
    async def main() -> None:
        server = CaptionServer(BroadcastSettings(port=0, ping_interval=2, ping_timeout=2))
        await server.start()
        url = server.overlay_url + "?size=40&lines=3&maxwidth=600&color=ffee00&outline=3&fade=0"
        chrome, tools = await _open_page(tmp_path / "profile", url)
        try:
            await tools.wait_for("document.documentElement.dataset.state === 'open'", timeout=30)
            blank = await tools.screenshot(tmp_path / "blank.png")
            assert max(max(row) for row in blank) == 0, "background must be transparent"

            server.publish(ev(1, "partial", "Committed words", "tentative tail"))
            await tools.wait_for("document.body.innerText.includes('tentative tail')")
            opacity = await tools.js(
                "[...document.querySelectorAll('#current span')].map(e => getComputedStyle(e).opacity)"
            )
            assert [float(x) for x in opacity] == [1.0, pytest.approx(0.55)]  # tentative is dimmed

            server.publish(ev(2, "final", "The first final caption."))
            long_cjk = "今天我们讨论实时字幕系统设计，包括延迟、稳定性和跨语言换行的问题。" * 2
            server.publish(ev(3, "final", long_cjk))
            server.publish(ev(4, "partial", "Hello", "world"))
            await tools.wait_for("document.body.innerText.includes('Hello world')")
            text = await tools.text()
            assert "The first final caption." in text and long_cjk in text
            shot = await tools.screenshot(tmp_path / "captions.png")
            inked = [y for y, row in enumerate(shot) if max(row) > 0]
            assert inked, "the screenshot shows no caption pixels"
            # position=bottom anchors the caption block to the bottom edge (it grows upwards)
            assert max(inked) > len(shot) * 3 // 4, "position=bottom puts the captions low on the page"

            # CJK wraps inside maxwidth instead of overflowing, and no line starts with '，'.
            box = await tools.js(
                "(() => { const e = document.querySelector('.final:last-child');"
                " const r = e.getBoundingClientRect();"
                " return [r.width, r.height, e.scrollWidth, e.clientWidth]; })()"
            )
            width, height, scroll_w, client_w = box
            assert width <= 600 and height > 2 * 40 and scroll_w <= client_w
            # At size 40 a line holds 14 ideographs (600 px less the line's .25em padding on each
            # side; fonts-noto-cjk, which install.sh installs, gives an ideograph 1 em), and the
            # 15th character is '，': only the line-break rules keep it off the start of line 2.
            starts = await tools.js(LINE_STARTS.replace("SELECTOR", ".final:last-child"))
            assert await tools.js("document.querySelector('.final:last-child').textContent") == long_cjk
            heads = [long_cjk[i] for i in starts]
            assert len(starts) >= 3 and not [c for c in heads if c in "，、。"], heads
            # The rules were needed here: a line begins one character early, before a '，'.
            assert any(long_cjk[i + 1 : i + 2] == "，" for i in starts[1:]), heads

            # The server goes away and comes back: the page reconnects by itself.
            port = server.port
            await server.close()
            await tools.wait_for("document.documentElement.dataset.state !== 'open'")
            server = CaptionServer(BroadcastSettings(port=port))
            await server.start()
            server.publish(ev(10, "final", "back after a restart"))
            await tools.wait_for("document.body.innerText.includes('back after a restart')", timeout=30)
        finally:
            await tools.ws.close()
            chrome.kill()
            chrome.wait(timeout=30)
            await server.close()

    asyncio.run(main())
    if out := os.environ.get("GLMASR_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "captions.png", Path(out) / "overlay-captions.png")
