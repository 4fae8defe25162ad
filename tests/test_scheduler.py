"""The scheduler thread with many streams: the Python API (``Captioner``), batching across
streams, finals never dropped, one stream's fault contained, memory flat over 1,000 streams."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import cer

SR = 16000


@pytest.fixture(scope="module")
def clips():
    """Three utterances by different voices, each followed by a pause."""
    from glmasr_live.devtools import synth

    rng = np.random.default_rng(5)
    out = []
    for words, voice, level in [
        ("hello seven three nine start".split(), synth.Voice("en-us", "m3", 150, 50), -24),
        ("open left two five".split(), synth.Voice("en-us", "f4", 150, 60), -28),
        ("blue eight four zero next".split(), synth.Voice("en-gb-x-gbcwmd", "m2", 150, 40), -26),
    ]:
        u = synth.word_utterance(words, voice, rng, gap_s=(0.05, 0.15), long_pause_p=0.0)
        audio = np.concatenate(
            [np.zeros(SR // 2, np.float32), synth.set_level(u.audio, level), np.zeros(SR, np.float32)]
        )
        out.append((audio, u.text))
    return out


def _feed_in_blocks(stream, audio, block=480):
    for i in range(0, len(audio), block):
        stream.feed(audio[i : i + block])


def test_captioner_streams_share_one_model_and_get_their_own_text(demo_engine, clips):
    from glmasr_live.streams import Captioner

    with Captioner(engine=demo_engine) as cap:
        streams = [cap.open_stream(f"s{k}") for k in range(len(clips))]
        feeders = [
            threading.Thread(target=_feed_in_blocks, args=(s, a))
            for s, (a, _) in zip(streams, clips, strict=True)
        ]
        for t in feeders:
            t.start()
        for t in feeders:
            t.join()
        for s in streams:
            s.end()
        results = [list(s.events()) for s in streams]
        rounds, rows = cap.scheduler.stats.rounds, cap.scheduler.stats.rows
    for events, (_, ref) in zip(results, clips, strict=True):
        finals = [e for e in events if e.type == "final"]
        assert len(finals) == 1 and cer(ref, finals[0].text) <= 0.15, (ref, finals)
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        assert all(e.lag >= 0 for e in events)
    assert rows > rounds, "some rounds must have batched several streams"


def test_resampled_stereo_stream(demo_engine, clips):
    import soxr

    from glmasr_live.streams import Captioner

    audio, ref = clips[0]
    stereo = np.repeat(soxr.resample(audio, SR, 48000)[:, None], 2, axis=1).astype(np.float32)
    with Captioner(engine=demo_engine) as cap:
        s = cap.open_stream("stereo", sample_rate=48000, channels=2)
        for i in range(0, len(stereo), 1440):
            s.feed(stereo[i : i + 1440])
        s.end()
        finals = [e for e in s.events() if e.type == "final"]
    assert len(finals) == 1 and cer(ref, finals[0].text) <= 0.15


def test_bad_stream_parameters_and_samples_are_one_clear_error(tiny_engine_factory):
    from glmasr_live.errors import ConfigError
    from glmasr_live.streams import Captioner

    with Captioner(engine=tiny_engine_factory(seed=0, dtype="float32")) as cap:
        with pytest.raises(ConfigError, match="sample_rate 0"):
            cap.open_stream("a", sample_rate=0)
        with pytest.raises(ConfigError, match="channels 0"):
            cap.open_stream("b", channels=0)
        s = cap.open_stream("c", sample_rate=48000, channels=2)
        with pytest.raises(ValueError, match=r"\(n, 2\)"):
            s.feed(np.zeros(3, np.float32))
        s.feed(np.full((480, 2), np.nan, np.float32))  # non-finite samples become silence
        s.end()
        assert s.wait(30)


def test_one_streams_fault_does_not_disturb_the_others(demo_engine, clips):
    from glmasr_live.streams import Captioner

    with Captioner(engine=demo_engine) as cap:
        good, bad = cap.open_stream("good"), cap.open_stream("bad")
        good._handle.decoder = cap.scheduler.make_decoder()
        broken = cap.scheduler.make_decoder()

        def always_fails(final, **kw):
            raise RuntimeError("injected fault in one stream")

        broken.plan = always_fails
        bad._handle.decoder = broken
        cap.scheduler.make_decoder = lambda: broken  # rebuilt decoders stay broken too
        _feed_in_blocks(bad, clips[1][0])
        _feed_in_blocks(good, clips[0][0])
        good.end()
        bad.end()
        got_good, got_bad = list(good.events()), list(bad.events())
    finals = [e for e in got_good if e.type == "final"]
    assert len(finals) == 1 and cer(clips[0][1], finals[0].text) <= 0.15
    assert not any(e.status in ("worker_error", "worker_restart") for e in got_good)
    assert any(e.status == "worker_error" and "injected" in (e.message or "") for e in got_bad)
    assert sum(e.type == "final" for e in got_bad) == 1  # its final still comes (empty: nothing decoded)


def test_thousand_streams_opened_fed_and_closed_leave_memory_flat(tiny_engine_factory, clips):
    from glmasr_live.asr.rounds import slot_store
    from glmasr_live.devtools.bench import rss_mib
    from glmasr_live.streams import Captioner

    engine = tiny_engine_factory(seed=0, chunk_length=4, dtype="float32")
    audio = clips[1][0][: int(1.8 * SR)]
    rss = {}
    with Captioner(engine=engine) as cap:
        store = slot_store(engine)
        for k in range(1000):
            s = cap.open_stream()
            s.feed(audio)
            s.end()
            assert s.wait(30)
            if k in (99, 999):
                rss[k] = rss_mib()
                held = (len(store.slots), store.rows, store.columns, cap.scheduler.streams)
                if k == 99:
                    first = held
        assert held == first  # no stream's slot or scheduler entry is left behind
        assert cap.scheduler.streams == 0
    assert rss[999] - rss[99] < 25, rss


def test_bench_streams_command_prints_table_and_writes_json(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "streams.json"
    cmd = [
        sys.executable,
        "-m",
        "glmasr_live",
        "bench-streams",
        "--streams",
        "2",
        "--seconds",
        "5",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "largest N held" in proc.stdout and "batched" in proc.stdout and "single" in proc.stdout
    data = json.loads(out.read_text())
    rows = {r["scheduling"]: r for r in data["results"]}
    assert set(rows) == {"batched", "single"}
    for r in rows.values():
        assert r["streams"] == 2 and r["finals"] >= 2 and r["final_p95"] is not None
        assert r["compute_per_audio_s"] > 0 and r["kv_mib_per_stream"] > 0
    assert data["meta"]["largest_n_held"].keys() == {"batched", "single"}


def test_a_failed_final_keeps_its_partial_text_joined_the_way_it_reads():
    """The final of an utterance whose last step failed is its last hypothesis: no stray space
    between CJK characters (it once was ``" ".join``: "你好 世界")."""
    from glmasr_live.events import Hypothesis, fallback_final

    assert fallback_final(Hypothesis("你好", "世界", 100, False, 0.1), 200).committed == "你好世界"
    assert fallback_final(Hypothesis("hello", "world", 100, False, 0.1), 200).committed == "hello world"
    assert fallback_final(Hypothesis("他说", "ok", 100, False, 0.1), 200).committed == "他说ok"
    assert fallback_final(None, 200).committed == ""
