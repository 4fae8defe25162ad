"""``glmasr-live eval``: normalisation, datasets, latency from events, bad inputs, and a real run
of the demo model on a small espeak-ng set built by scripts/make_eval_set.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glmasr_live.cli import main
from glmasr_live.devtools import synth
from glmasr_live.devtools.eval import WordSpan, caption_latency, load_dataset, metric_for, normalize, score
from glmasr_live.errors import ConfigError
from glmasr_live.events import CaptionEvent

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo-model"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
needs_demo = pytest.mark.skipif(
    not (DEMO / "config.json").exists(),
    reason="assets/demo-model does not exist yet (trained by scripts/train_demo_model.py)",
)


# ---------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),  # case, punctuation
        ("  stop   GO\tleft\n", "stop go left"),  # spacing
        ("ＨＥＬＬＯ　ｗｏｒｌｄ！", "hello world"),  # full width letters, space and punctuation
        ("Don't — it's", "dont its"),  # apostrophes join, dashes split
        ("1,000 and 3.5", "1000 and 35"),  # digit grouping
        ("一五四五。", "一 五 四 五"),  # CJK: one unit per character, punctuation gone
        ("一 五　四，五", "一 五 四 五"),  # spaces between CJK characters do not count
        ("你好，hello世界", "你 好 hello 世 界"),  # a Latin word inside Chinese is one unit
        ("１２３", "123"),  # full-width digits
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_metric_by_language() -> None:
    assert [metric_for(x) for x in ("en", "cmn", "yue", "zh-TW", "zh_cn", "fr")] == [
        "wer",
        "cer",
        "cer",
        "cer",
        "cer",
        "wer",
    ]


def test_score_counts_edits_in_units() -> None:
    s = score(["one two three", "一二三四"], ["One, two, tree.", "一 二 三"])
    assert (s.substitutions, s.deletions, s.insertions, s.ref_units) == (1, 1, 0, 7)
    assert s.rate == pytest.approx(2 / 7)


# ---------------------------------------------------------------------------- datasets


def _wav(path: Path, seconds: float = 0.3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synth.write_wav(path, np.zeros(int(seconds * 16000), np.float32))
    return path


def test_directory_of_audio_and_txt(tmp_path: Path) -> None:
    _wav(tmp_path / "b" / "zh.wav")
    (tmp_path / "b" / "zh.txt").write_text("一二三\n", encoding="utf-8")
    _wav(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("Stop go\n", encoding="utf-8")
    words = {
        "words": [{"word": "stop", "start": 0.0, "end": 0.1}, {"word": "go", "start": 0.15, "end": 0.25}]
    }
    (tmp_path / "a.words.json").write_text(json.dumps(words), encoding="utf-8")
    items = load_dataset(tmp_path)
    assert [(i.name, i.lang, i.metric, i.reference) for i in items] == [
        ("a", "en", "wer", "Stop go"),
        ("b/zh", "zh", "cer", "一二三"),
    ]
    assert items[0].words == (WordSpan("stop", 0.0, 0.1), WordSpan("go", 0.15, 0.25))
    assert items[1].words == ()


def test_manifest(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "x.wav")
    _wav(tmp_path / "audio" / "y.wav")
    lines = [
        {"audio": "audio/x.wav", "text": "一二", "lang": "yue", "words": [
            {"word": "一", "start": 0.0, "end": 0.1}, {"word": "二", "start": 0.1, "end": 0.2}]},
        {"audio_filepath": str(tmp_path / "audio" / "y.wav"), "text": "hello"},
    ]  # fmt: skip
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n\n", encoding="utf-8"
    )
    items = load_dataset(manifest)
    assert [(i.name, i.lang, i.metric) for i in items] == [
        ("audio/x", "yue", "cer"),
        ("audio/y", "en", "wer"),
    ]
    assert [w.end for w in items[0].words] == [0.1, 0.2]
    (tmp_path / "manifest.jsonl").write_text(manifest.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_dataset(tmp_path) == items  # a directory with manifest.jsonl reads the manifest


def test_word_timings_must_spell_the_reference(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "a.txt").write_text("stop go", encoding="utf-8")
    (tmp_path / "a.words.json").write_text('{"words": [{"word": "stop", "start": 0, "end": 0.1}]}')
    with pytest.raises(ConfigError, match="do not spell"):
        load_dataset(tmp_path)


def _bad_missing(tmp: Path) -> Path:
    return tmp / "nowhere"


def _bad_no_audio(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("hello")
    return tmp


def _bad_audio_without_txt(tmp: Path) -> Path:
    _wav(tmp / "a.wav")
    return tmp


def _bad_manifest_audio(tmp: Path) -> Path:
    _wav(tmp / "a.wav")
    (tmp / "m.jsonl").write_text('{"audio": "a.wav", "text": "x"}\n{"audio": "b.wav", "text": "y"}\n')
    return tmp / "m.jsonl"


def _bad_manifest_fields(tmp: Path) -> Path:
    (tmp / "m.jsonl").write_text('{"file": "a.wav", "sentence": "x"}\n')
    return tmp / "m.jsonl"


def _bad_manifest_json(tmp: Path) -> Path:
    (tmp / "m.jsonl").write_text("audio,text\na.wav,x\n")
    return tmp / "m.jsonl"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_bad_missing, "no such file"),
        (_bad_no_audio, "no audio files"),
        (_bad_audio_without_txt, "without a same-named .txt"),
        (_bad_manifest_audio, "m.jsonl:2: audio file b.wav not found"),
        (_bad_manifest_fields, 'needs "audio"'),
        (_bad_manifest_json, "m.jsonl:1: not a JSON object"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, needle
) -> None:
    rc = main(["eval", str(make(tmp_path)), "--model", "demo"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("glmasr-live: error:") and err.count("\n") == 1, err
    assert needle in err


def test_eval_options() -> None:
    from glmasr_live.cli import build_parser

    args = build_parser().parse_args(["eval", "set"])
    assert (args.mode, args.encoder_padding, args.json) == ("both", "both", None)
    args = build_parser().parse_args(["eval", "set", "--encoder-padding", "none", "--mode", "streaming"])
    assert (args.mode, args.encoder_padding) == ("streaming", "none")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["eval", "set", "--encoder-padding", "half"])
    assert e.value.code == 2


# ---------------------------------------------------------------------------- latency


def _ev(kind: str, clock: float, committed: str, tentative: str = "", end: float = 0.0) -> CaptionEvent:
    text = f"{committed} {tentative}".strip()
    return CaptionEvent(kind, 0, 0, 0.0, end, committed, tentative, text, clock, 0.0)  # type: ignore[arg-type]


WORDS = [WordSpan("one", 0.5, 0.8), WordSpan("two", 1.0, 1.3), WordSpan("three", 1.5, 1.8)]


def test_latency_per_word_from_events() -> None:
    events = [
        _ev("partial", 1.0, "", "One"),
        _ev("partial", 1.5, "one", "too"),  # a wrong word is not "shown"
        _ev("partial", 2.0, "one two", "three,"),
        _ev("final", 2.6, "One two three.", end=2.1),
    ]
    lat = caption_latency(events, WORDS, post_roll_s=0.3)
    assert lat.shown == pytest.approx((0.2, 0.7, 0.2))
    assert lat.committed == pytest.approx((0.7, 0.7, 0.8))
    assert lat.final == pytest.approx((0.8,))
    assert lat.timed_words == 3
    # Without word timings: from the segment end less the post-roll.
    assert caption_latency(events, [], post_roll_s=0.3).final == pytest.approx((0.8,))


def test_latency_across_utterances_and_errors() -> None:
    events = [
        _ev("final", 1.9, "one two", end=1.6),
        _ev("partial", 2.2, "", "three"),  # the first utterance's final comes before it
        _ev("final", 2.5, "three", end=2.1),
    ]
    lat = caption_latency(events, WORDS, post_roll_s=0.3)
    assert lat.shown == pytest.approx((1.1, 0.6, 0.4))
    assert lat.final == pytest.approx((0.6, 0.7))
    wrong = caption_latency([_ev("final", 2.5, "one to three", end=2.1)], WORDS, 0.3)
    assert wrong.shown == pytest.approx((1.7,))  # nothing after a wrong word is timed


# ---------------------------------------------------------------------------- the real thing


def _make_set(out: Path, *counts: str) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_eval_set.py"), str(out), *counts],
        check=True,
        capture_output=True,
    )


@needs_espeak
def test_eval_set_is_deterministic(tmp_path: Path) -> None:
    _make_set(tmp_path / "a", "--en", "2", "--cmn", "1", "--yue", "0", "--seed", "3")
    _make_set(tmp_path / "b", "--en", "1", "--cmn", "0", "--yue", "0", "--seed", "3")
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "en_000.wav").read_bytes() == (b / "en_000.wav").read_bytes()
    assert (a / "en_000.words.json").read_text() == (b / "en_000.words.json").read_text()
    items = load_dataset(a)
    assert [i.name for i in items] == ["en_000", "en_001", "cmn_000"]
    assert all(i.words for i in items)
    assert max(w.end for w in items[1].words) > 6.0  # the "long" kind spans several demo windows


@pytest.fixture(scope="session")
def eval_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path_factory.mktemp("evalset")
    _make_set(out, "--en", "4", "--cmn", "2", "--yue", "2", "--seed", "11")
    return out


@needs_demo
def test_eval_demo_model_end_to_end(eval_set: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "glmasr_live", "eval", str(eval_set), "--model", "demo", "--device", "cpu"]
    proc = subprocess.run([*cmd, "--json", str(report_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("offline", "streaming-full", "streaming-none", "speech end→final", "en_003", "yue_001"):
        assert needle in out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["modes"] == ["offline", "streaming-full", "streaming-none"]
    assert set(report["overall"]) == {"en", "cmn", "yue", "all CER"}
    assert report["overall"]["en"]["metric"] == "wer" and report["overall"]["cmn"]["metric"] == "cer"
    items = load_dataset(eval_set)
    assert report["overall"]["en"]["offline"]["ref_units"] == sum(
        len(i.words) for i in items if i.lang == "en"
    )
    for f in report["files"]:
        assert set(f["runs"]) == set(report["modes"])
    for mode in ("streaming-full", "streaming-none"):
        lat = report["latency"][mode]
        assert lat["timed_words"] == sum(len(i.words) for i in items)
        assert lat["shown_words"] > 0 and lat["committed_words"] > 0
        assert 0 < lat["speech_end_to_final"]["p50"] < 5
    # A sanity floor, not the accuracy target (docs/eval.md has the measured figures).
    assert report["overall"]["en"]["offline"]["rate"] < 0.5
