"""``POST /v1/audio/transcriptions`` and ``GET /v1/models`` through the official ``openai``
client and raw multipart, on a real server with the demo model; and the ``pieces`` stage."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import aiohttp
import numpy as np
import openai
import pytest
import websockets
from conftest import cer
from serverkit import SR, RunningServer, pcm16

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_WAV = ASSETS / "demo.wav"
DEMO_LINES = [line.strip() for line in (ASSETS / "demo.txt").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def srv(captioner, tmp_path_factory):
    with RunningServer(captioner, tmp_path_factory.mktemp("rooms")) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv):
    return openai.OpenAI(base_url=srv.http("/v1"), api_key="x", max_retries=0, timeout=60)


def reference() -> str:
    from glmasr_live.pieces import join

    return join(DEMO_LINES)


def transcribe(client, fmt, **kw):
    with DEMO_WAV.open("rb") as f:
        return client.audio.transcriptions.create(model="whisper-1", file=f, response_format=fmt, **kw)


# -- the formats, through the openai client ---------------------------------------------------


def test_json_and_text_read_like_the_reference(client):
    got = transcribe(client, "json")
    assert cer(reference(), got.text) <= 0.05, got.text
    assert got.usage is not None and got.usage.seconds == 42  # ceil(41.24 s)
    text = transcribe(client, "text")
    assert text == got.text + "\n"  # greedy decoding: the same pieces give the same text


def test_srt_has_one_cue_per_utterance_in_time_order(client):
    import srt

    cues = list(srt.parse(transcribe(client, "srt")))
    assert len(cues) == len(DEMO_LINES)
    for cue, line in zip(cues, DEMO_LINES, strict=True):
        assert cer(line, cue.content) <= 0.2, (line, cue.content)
        assert cue.start < cue.end
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))


def test_vtt_parses_with_the_same_cues(client):
    import webvtt

    captions = webvtt.from_string(transcribe(client, "vtt")).captions
    assert len(captions) == len(DEMO_LINES)
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts) and all(c.start_in_seconds < c.end_in_seconds for c in captions)


def test_verbose_json_segments(client):
    from glmasr_live.pieces import join

    got = transcribe(
        client, "verbose_json", language="en", prompt="Dr. Smith", temperature=0.2,
        timestamp_granularities=["segment", "word"],
    )  # fmt: skip
    extra = got.model_extra or {}
    assert extra.get("task") == "transcribe" and got.language == "en"
    assert got.duration == pytest.approx(41.244, abs=0.01)
    segs = got.segments or []
    assert [s.id for s in segs] == list(range(len(DEMO_LINES)))
    assert got.text == join([s.text for s in segs])
    assert cer(reference(), got.text) <= 0.05  # the prompt is ignored, not obeyed
    for s, nxt in zip(segs, segs[1:], strict=False):
        assert s.start < s.end <= nxt.start
    for s in segs:
        assert s.tokens and s.temperature == 0.0 and s.seek == round(s.start * 100)
        assert s.compression_ratio > 0 and s.avg_logprob is None and s.no_speech_prob is None
    assert got.words is None  # no word timings rather than made-up ones


def test_verbose_json_has_segments_whatever_granularities_ask_for(srv):
    """curl -F 'timestamp_granularities[]=word' -F response_format=verbose_json: segments are
    always there (the docs say so); words are not, since GLM-ASR has no word timings."""
    import soundfile as sf

    audio, rate = sf.read(DEMO_WAV, dtype="float32")
    wav = io.BytesIO()
    sf.write(wav, audio[: int(8.4 * rate)], rate, format="WAV")  # the first two utterances
    url = srv.http("/v1/audio/transcriptions")

    async def main() -> list[dict]:
        bodies = []
        for wanted in (["word"], ["segment"], ["word", "segment"], []):
            fields: dict[str, object] = {"file": wav.getvalue(), "response_format": "verbose_json"}
            body, content_type = multipart(fields)
            for g in wanted:  # the field repeated, as curl -F sends it twice
                extra, _ = multipart({"timestamp_granularities[]": g})
                body = body.replace(b"------glmasr-test-boundary--\r\n", extra)
            headers = {"Content-Type": content_type}
            async with aiohttp.ClientSession() as s, s.post(url, data=io.BytesIO(body), headers=headers) as r:
                assert r.status == 200, await r.text()
                bodies.append(await r.json())
        return bodies

    bodies = asyncio.run(main())
    for body in bodies:
        assert "words" not in body
        assert [s["text"] for s in body["segments"]] == [s["text"] for s in bodies[1]["segments"]]
    assert len(bodies[0]["segments"]) == 2 and cer(" ".join(DEMO_LINES[:2]), bodies[0]["text"]) <= 0.1


def test_models_lists_the_served_model(client, srv):
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["demo"]
    raw = client.audio.transcriptions.with_raw_response.create(
        model="anything-at-all", file=("demo.wav", DEMO_WAV.read_bytes()), response_format="json"
    )
    assert raw.headers["X-Model"] == "demo"


def test_openai_client_sees_errors_in_its_own_shape(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="m", file=("talk.wav", b"not audio at all" * 100))
    err = info.value.body
    assert isinstance(err, dict) and err["code"] == "invalid_audio" and err["param"] == "file"
    assert err["message"].startswith("talk.wav:") and "glmasr-upload" not in err["message"]


# -- raw multipart: what curl can send ----------------------------------------------------------


def multipart(fields: dict[str, object]) -> tuple[bytes, str]:
    """A multipart/form-data body as curl -F sends it: bytes values are files."""
    boundary = "----glmasr-test-boundary"
    out = b""
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if isinstance(value, bytes):
            head += '; filename="x.wav"\r\nContent-Type: application/octet-stream'
            data = value
        else:
            data = str(value).encode()
        out += head.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def post(url: str, fields: dict[str, object], *, chunked: bool = False) -> tuple[int, dict]:
    body, content_type = multipart(fields)

    async def pieces():  # no Content-Length: only the server's running count can stop it
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    async with aiohttp.ClientSession() as s:
        # A file object, not bytes: aiohttp warns that a large bytes body may stall the loop.
        data = pieces() if chunked else io.BytesIO(body)
        async with s.post(url, data=data, headers={"Content-Type": content_type}) as r:
            return r.status, await r.json()


def error_of(status_body: tuple[int, dict]) -> tuple[int, str | None, str | None]:
    status, body = status_body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return status, err["param"], err["code"]


def test_bad_requests_get_openai_errors_and_the_server_goes_on(srv):
    url = srv.http("/v1/audio/transcriptions")
    wav = DEMO_WAV.read_bytes()

    async def main():
        assert error_of(await post(url, {"model": "m"})) == (400, "file", "missing_file")
        assert error_of(await post(url, {"file": b"\x00garbage" * 999})) == (400, "file", "invalid_audio")
        assert error_of(await post(url, {"file": b""})) == (400, "file", "invalid_audio")
        assert error_of(await post(url, {"file": wav[:44]})) == (400, "file", "invalid_audio")
        assert error_of(await post(url, {"file": wav[:40_000]})) == (
            400,
            "file",
            "invalid_audio",
        )  # truncated
        bad = await post(url, {"file": wav, "response_format": "docx"})
        assert error_of(bad) == (400, "response_format", "invalid_value")
        bad = await post(url, {"file": wav, "prompt": "x" * 70_000})
        assert error_of(bad) == (400, "prompt", "invalid_value")
        bad = await post(url, {"file": wav, "timestamp_granularities[]": "phoneme"})
        assert error_of(bad) == (400, "timestamp_granularities[]", "invalid_value")
        bad = await post(url, {"file": wav, "temperature": "hot"})
        assert error_of(bad) == (400, "temperature", "invalid_value")
        async with aiohttp.ClientSession() as s:
            async with s.post(url, data=b'{"file": 1}', headers={"Content-Type": "application/json"}) as r:
                assert error_of((r.status, await r.json())) == (400, None, "invalid_content_type")
            async with s.post(
                url, data=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data; boundary=x"}
            ) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] in (
                    "invalid_multipart",
                    "missing_file",
                )
            async with s.get(srv.http("/healthz")) as r:
                assert (await r.json())["status"] == "ok"
        ok = await post(url, {"file": wav, "model": "m"})
        assert ok[0] == 200 and cer(reference(), ok[1]["text"]) <= 0.05

    asyncio.run(main())


def test_uploads_over_the_limit_get_413(captioner, tmp_path):
    wav = DEMO_WAV.read_bytes()
    with RunningServer(captioner, tmp_path, max_upload_bytes=50_000) as small:
        url = small.http("/v1/audio/transcriptions")

        async def main():
            assert error_of(await post(url, {"file": wav})) == (413, "file", "file_too_large")
            assert error_of(await post(url, {"file": wav}, chunked=True)) == (413, "file", "file_too_large")
            return await post(url, {"file": short_wav(1.0)})  # under the limit: transcribed

        status, body = asyncio.run(main())
        assert status == 200 and body["text"].startswith("hello")


def short_wav(seconds: float) -> bytes:
    import soundfile as sf

    from glmasr_live.audio.decode import load_audio

    buf = io.BytesIO()
    sf.write(buf, load_audio(DEMO_WAV)[: int(seconds * SR)], SR, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def test_shutting_down_answers_503_and_tokens_guard_the_endpoint(captioner, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from glmasr_live.server.app import ServerContext, build_app
    from glmasr_live.server.settings import ServerSettings

    async def stopping():
        ctx = ServerContext(ServerSettings(port=0, transcripts_dir=tmp_path), captioner)
        ctx.stopping.set()  # what SIGTERM does first: no new work
        async with TestClient(TestServer(build_app(ctx))) as http:
            body, content_type = multipart({"file": short_wav(0.5)})
            r = await http.post("/v1/audio/transcriptions", data=body, headers={"Content-Type": content_type})
            return error_of((r.status, await r.json()))

    assert asyncio.run(stopping()) == (503, None, "server_shutting_down")
    with RunningServer(captioner, tmp_path, publish_token="pub", view_token="view") as guarded:
        url = guarded.http("/v1")
        ok = openai.OpenAI(base_url=url, api_key="pub", max_retries=0)  # api_key is sent as Bearer
        assert ok.audio.transcriptions.create(model="m", file=("a.wav", short_wav(1.0))).text
        viewer = openai.OpenAI(base_url=url, api_key="view", max_retries=0)
        assert [m.id for m in viewer.models.list().data] == ["demo"]  # a viewer may list models
        with pytest.raises(openai.PermissionDeniedError) as info:
            viewer.audio.transcriptions.create(model="m", file=("a.wav", short_wav(1.0)))
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "forbidden"


# -- file work never holds up a live stream -----------------------------------------------------


@pytest.fixture(scope="module")
def live_speech():
    """Three utterances the demo model knows, with pauses: one live stream of ~9 s."""
    from glmasr_live.devtools import synth

    rng = np.random.default_rng(5)
    parts, refs = [np.zeros(SR // 2, np.float32)], []
    for words in ("hello seven three nine start", "open left two five", "blue eight four zero next"):
        u = synth.word_utterance(words.split(), synth.Voice("en-us", "f4", 150, 60), rng, gap_s=(0.05, 0.15),
                                 long_pause_p=0.0)  # fmt: skip
        parts += [synth.set_level(u.audio, -24), np.zeros(int(1.2 * SR), np.float32)]
        refs.append(u.text)
    return np.concatenate(parts), refs


def test_file_transcription_while_a_live_stream_runs(srv, live_speech):
    audio, refs = live_speech
    block = SR // 10
    got: list[dict] = []
    started = asyncio.Event()
    aclient = openai.AsyncOpenAI(base_url=srv.http("/v1"), api_key="x", max_retries=0, timeout=120)

    async def live() -> float:
        async with websockets.connect(srv.ws("/v1/ingest?room=live&name=Ann"), max_size=None) as ws:

            async def reader():
                async for msg in ws:
                    got.append(json.loads(msg))
                    started.set()

            task = asyncio.create_task(reader())
            t0 = time.monotonic()
            for i in range(0, len(audio), block):
                await ws.send(pcm16(audio[i : i + block]))
                # Real-time pace: the stream's clock and the wall clock agree, so lag is delay.
                await asyncio.sleep(max(0.0, t0 + (i + block) / SR - time.monotonic()))
            await ws.send(json.dumps({"type": "end"}))
            await task
            return time.monotonic()

    async def files() -> tuple[list[str], float]:
        await started.wait()  # the live stream is open and talking
        texts = []
        for _ in range(2):
            with DEMO_WAV.open("rb") as f:
                texts.append((await aclient.audio.transcriptions.create(model="m", file=f)).text)
        return texts, time.monotonic()

    async def main():
        try:
            return await asyncio.gather(live(), files())
        finally:
            await aclient.close()  # its connections belong to this event loop

    live_done, (texts, files_done) = asyncio.run(main())
    finals = [m for m in got if m.get("type") == "final"]
    assert len(finals) == len(refs)
    for fin, ref in zip(finals, refs, strict=True):
        assert cer(ref, fin["text"]) <= 0.15, (ref, fin["text"])
        assert fin["lag"] < 1.0, fin  # finals as prompt as ever (~0.1 s here)
    for text in texts:
        assert cer(reference(), text) <= 0.05
    assert files_done < live_done  # file jobs ran in the live stream's idle time, not after it


# -- the pieces stage ---------------------------------------------------------------------------


def test_pieces_fit_the_window_and_cover_the_speech_in_order(demo_engine):
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.audio.segmenter import SegmenterSettings, find_segments
    from glmasr_live.pieces import cut

    audio = load_audio(DEMO_WAV)
    window = int(2.5 * SR)  # shorter than some utterances: they must be split
    got = cut(audio, window, SegmenterSettings())
    assert [p.index for p in got] == list(range(len(got)))
    assert all(0 < p.end_sample - p.start_sample <= window for p in got)
    assert all(a.end_sample <= b.start_sample for a, b in zip(got, got[1:], strict=False))
    spans = find_segments(audio, SegmenterSettings(max_utterance_s=2.5, split_search_s=1.25))
    covered = np.zeros(len(audio), bool)
    for p in got:
        covered[p.start_sample : p.end_sample] = True
    for s, e in spans:
        assert covered[s:e].all()
    assert len(got) > len(DEMO_LINES)  # some utterances were longer than the window


def test_split_long_cuts_at_the_pause():
    from glmasr_live.pieces import split_long

    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(10 * SR) * 0.1).astype(np.float32)
    audio[int(3.0 * SR) : int(3.2 * SR)] *= 0.001  # one short pause, inside the search span
    spans = split_long(audio, 0, len(audio), 4 * SR)
    assert 3.0 * SR < spans[0][1] < 3.2 * SR
    assert spans[0][0] == 0 and spans[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(e - s <= 4 * SR for s, e in spans)
    flat = np.zeros(10 * SR, np.float32)  # silence everywhere: any cut will do, but within the window
    assert all(e - s <= 4 * SR for s, e in split_long(flat, 0, len(flat), 4 * SR))


def test_each_piece_gets_its_own_token_cap(demo_engine):
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.pieces import transcribe

    audio = load_audio(DEMO_WAV)
    caps: list[tuple[float, int]] = []

    def model(clip, cap):
        caps.append((len(clip) / SR, cap))
        return demo_engine.transcribe([clip], max_new_tokens=cap)[0]

    result = transcribe(audio, model, demo_engine.max_new_tokens, demo_engine.window_samples)
    assert [cap for _, cap in caps] == [demo_engine.max_new_tokens(sec) for sec, _ in caps]
    assert len(set(cap for _, cap in caps)) > 1
    assert max(sec for sec, _ in caps) <= demo_engine.window_seconds
    assert cer(reference(), result.text) <= 0.05
    assert [s.id for s in result.segments] == list(range(len(caps)))


def test_join_puts_no_space_next_to_cjk():
    from glmasr_live.pieces import join

    assert join(["go left right", "三五七九", "green", "", "red"]) == "go left right三五七九green red"
    assert join([]) == ""
