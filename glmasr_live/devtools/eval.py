"""Accuracy and caption latency of offline and streaming transcription (no torch here).

Datasets, text normalisation, scoring with jiwer, latency from caption events, the report.
``glmasr-live eval`` (``commands/eval.py``) runs the model and feeds the results in.

Scoring units: words for Latin script (WER), characters for Chinese and Cantonese (CER; a
Latin-script word inside Chinese text counts as one unit), after folding case, width
(NFKC) and punctuation. The same units are what LocalAgreement compares when it commits.

Latency is read from the caption events of a replay on the simulated live clock (``replay``):
an event's ``audio_clock`` is when it would have appeared live, on this machine's speed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glmasr_live.asr.agreement import split_units
from glmasr_live.errors import ConfigError, GlmAsrLiveError
from glmasr_live.events import CaptionEvent, is_cjk

Metric = Literal["wer", "cer"]
MANIFEST_NAME = "manifest.jsonl"
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac"})
CJK_LANGS = ("zh", "cmn", "yue", "wuu", "nan", "hak", "ja")
"""Language codes (and their ``-region`` forms) scored by CER."""
_APOSTROPHES = "'\u2019\u02bc`"
_DIGIT_GROUPING = re.compile(r"(?<=\d)[,.](?=\d)")  # 1,000 = 1000
REPORT_VERSION = 1


# ---------------------------------------------------------------------------- normalisation


def text_units(text: str) -> list[str]:
    """Scoring units of ``text``: case-, width- and punctuation-folded words, CJK characters."""
    t = unicodedata.normalize("NFKC", text).casefold()
    for a in _APOSTROPHES:  # "don't" and "dont" are the same word
        t = t.replace(a, "")
    t = _DIGIT_GROUPING.sub("", t)
    t = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in t)
    return [t[a:b] for a, b in split_units(t)]


def normalize(text: str) -> str:
    """``text`` as scored: its units joined by single spaces."""
    return " ".join(text_units(text))


def has_cjk(text: str) -> bool:
    return any(is_cjk(ch) and unicodedata.category(ch) == "Lo" for ch in text)


def metric_for(lang: str) -> Metric:
    base = lang.lower().replace("_", "-").split("-")[0]
    return "cer" if base in CJK_LANGS else "wer"


# ---------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class WordSpan:
    """A reference word and where it is in the audio (seconds)."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class EvalItem:
    """One audio file and its reference. ``words`` is empty without word timings."""

    name: str
    audio: Path
    reference: str
    lang: str
    metric: Metric
    words: tuple[WordSpan, ...] = ()


def load_dataset(path: str | Path) -> list[EvalItem]:
    """A JSONL manifest, a directory holding ``manifest.jsonl``, or a directory of audio files
    with same-named ``.txt`` references (searched recursively)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such file or directory")
    if p.is_file():
        return _from_manifest(p)
    if (p / MANIFEST_NAME).is_file():
        return _from_manifest(p / MANIFEST_NAME)
    return _from_directory(p)


def _from_directory(root: Path) -> list[EvalItem]:
    audio = sorted(f for f in root.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
    if not audio:
        raise ConfigError(
            f"{root}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) and no {MANIFEST_NAME}"
        )
    missing = [f for f in audio if not f.with_suffix(".txt").is_file()]
    if missing:
        raise ConfigError(
            f"{root}: {len(missing)} audio file(s) without a same-named .txt reference, "
            f"e.g. {missing[0].relative_to(root)}"
        )
    return [_item(root, f, _read_text(f.with_suffix(".txt")).strip(), None, None) for f in audio]


def _from_manifest(path: Path) -> list[EvalItem]:
    items = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: not a JSON object ({e.msg})") from None
        audio = rec.get("audio", rec.get("audio_filepath")) if isinstance(rec, dict) else None
        if not isinstance(audio, str) or not isinstance(rec.get("text"), str):
            raise ConfigError(f'{path}:{n}: needs "audio" (a path) and "text" (the reference)')
        file = Path(audio).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise ConfigError(f"{path}:{n}: audio file {audio} not found")
        lang = rec.get("lang")
        items.append(_item(path.parent, file, rec["text"], lang if isinstance(lang, str) else None, rec))
    if not items:
        raise ConfigError(f"{path}: the manifest lists no audio")
    return items


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read as UTF-8 text ({e})") from None


def _item(root: Path, audio: Path, text: str, lang: str | None, rec: dict[str, Any] | None) -> EvalItem:
    lang = lang or ("zh" if has_cjk(text) else "en")
    try:
        name = audio.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        name = audio.stem
    words = _word_spans(audio, rec.get("words") if rec else None, root)
    ref_units = text_units(text)
    if words and [u for w in words for u in text_units(w.word)] != ref_units:
        raise ConfigError(f"{audio}: the word timings do not spell the reference text")
    return EvalItem(name, audio, text, lang, metric_for(lang), words)


def _word_spans(audio: Path, spec: Any, root: Path) -> tuple[WordSpan, ...]:
    """Word timings: inline in the manifest, a JSON file it names, or ``<audio>.words.json``."""
    if spec is None:
        side = audio.with_suffix(".words.json")
        if not side.is_file():
            return ()
        spec = str(side)
    if isinstance(spec, str):
        file = spec if Path(spec).is_absolute() else root / spec
        try:
            spec = json.loads(_read_text(Path(file)))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{file}: not JSON ({e.msg})") from None
    if isinstance(spec, dict):
        spec = spec.get("words")
    try:
        return tuple(WordSpan(str(w["word"]), float(w["start"]), float(w["end"])) for w in spec)
    except (TypeError, KeyError, ValueError):
        raise ConfigError(f'{audio}: word timings must be a list of {{"word", "start", "end"}}') from None


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Score:
    """Edit operations in scoring units (words or characters); ``rate`` is WER or CER."""

    substitutions: int
    deletions: int
    insertions: int
    ref_units: int
    rate: float

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def score(references: Sequence[str], hypotheses: Sequence[str]) -> Score:
    """Corpus-level error rate of ``hypotheses`` against ``references`` (normalised first)."""
    try:
        import jiwer
    except ImportError as e:
        raise GlmAsrLiveError("eval needs jiwer: pip install 'glmasr-live[eval]'") from e
    out = jiwer.process_words([normalize(r) for r in references], [normalize(h) for h in hypotheses])
    n = out.hits + out.substitutions + out.deletions
    return Score(out.substitutions, out.deletions, out.insertions, n, float(out.wer))


# ---------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Latency:
    """Seconds on the live clock, one value per reference word (``shown``, ``committed``:
    after the word's end) or per final (``final``: after the end of speech)."""

    shown: tuple[float, ...]
    committed: tuple[float, ...]
    final: tuple[float, ...]
    timed_words: int  # reference words with timings (0: only ``final`` is measured)


def caption_latency(events: Sequence[CaptionEvent], words: Sequence[WordSpan], post_roll_s: float) -> Latency:
    """A word is shown (committed) at the first event whose text (committed text), after the
    finals before it, starts with the reference up to and including that word, in units."""
    events = [e for e in events if e.type in ("partial", "final")]
    ref: list[str] = []
    cum: list[int] = []
    for w in words:
        ref += text_units(w.word)
        cum.append(len(ref))
    shown = _first_reach([(c, s) for c, s, _ in _displays(events)], ref, cum)
    committed = _first_reach([(c, k) for c, _, k in _displays(events)], ref, cum)
    return Latency(
        tuple(t - w.end for t, w in zip(shown, words, strict=True) if t is not None),
        tuple(t - w.end for t, w in zip(committed, words, strict=True) if t is not None),
        tuple(_final_latency(events, words, post_roll_s)),
        len(words),
    )


def _displays(events: Sequence[CaptionEvent]) -> Iterator[tuple[float, list[str], list[str]]]:
    """(clock, units shown, units committed) after each event, earlier finals included."""
    done: list[str] = []
    for ev in events:
        if ev.type == "final":
            done = done + text_units(ev.text)
            yield ev.audio_clock, done, done
        else:
            yield ev.audio_clock, done + text_units(ev.text), done + text_units(ev.committed)


def _first_reach(
    seq: Sequence[tuple[float, list[str]]], ref: list[str], cum: list[int]
) -> list[float | None]:
    times: list[float | None] = [None] * len(cum)
    k = 0  # a word is reached only with all words before it: the reached words are a prefix
    for clock, units in seq:
        m = 0
        while m < min(len(units), len(ref)) and units[m] == ref[m]:
            m += 1
        while k < len(cum) and cum[k] <= m:
            times[k] = clock
            k += 1
    return times


def _final_latency(
    events: Sequence[CaptionEvent], words: Sequence[WordSpan], post_roll_s: float
) -> list[float]:
    """Per final: its clock minus the end of the last word it covers, or, without word
    timings, minus the segment end less the segmenter's post-roll (the estimated end of speech)."""
    out: list[float] = []
    lo = float("-inf")
    for f in (e for e in events if e.type == "final"):
        if words:
            ends = [w.end for w in words if lo < w.end <= f.end]
            if ends:
                out.append(f.audio_clock - max(ends))
        elif f.text.strip():
            out.append(f.audio_clock - max(f.start, f.end - post_roll_s))
        lo = f.end
    return out


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values, np.float64), [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class RunResult:
    """One file transcribed one way (a mode): the text, its score, and for streaming the latency."""

    hypothesis: str
    score: Score
    latency: Latency | None = None


@dataclass
class FileReport:
    item: EvalItem
    seconds: float
    runs: dict[str, RunResult] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Every file under every mode (``offline``, ``streaming-full``, ``streaming-none``)."""

    modes: list[str]
    files: list[FileReport]
    compute_s: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_s(self) -> float:
        return sum(f.seconds for f in self.files)

    def groups(self) -> list[tuple[str, Metric, list[FileReport]]]:
        """Per language; plus all files of a metric when several languages share it."""
        out: list[tuple[str, Metric, list[FileReport]]] = []
        for metric in ("wer", "cer"):
            files = [f for f in self.files if f.item.metric == metric]
            langs = sorted({f.item.lang for f in files})
            out += [(lang, metric, [f for f in files if f.item.lang == lang]) for lang in langs]
            if len(langs) > 1:
                out.append((f"all {metric.upper()}", metric, files))
        return out

    def overall(self, files: Sequence[FileReport], mode: str) -> Score:
        return score([f.item.reference for f in files], [f.runs[mode].hypothesis for f in files])

    def latency(self, mode: str) -> dict[str, Any]:
        lats = [la for f in self.files if (la := f.runs[mode].latency) is not None]
        shown = [v for la in lats for v in la.shown]
        committed = [v for la in lats for v in la.committed]
        return {
            "word_shown": percentiles(shown),
            "word_committed": percentiles(committed),
            "speech_end_to_final": percentiles([v for la in lats for v in la.final]),
            "timed_words": sum(la.timed_words for la in lats),
            "shown_words": len(shown),
            "committed_words": len(committed),
        }

    def rtf(self, mode: str) -> float:
        return self.compute_s.get(mode, 0.0) / max(self.audio_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        overall = {
            name: {
                "metric": metric,
                "files": len(fs),
                **{m: _score_dict(self.overall(fs, m)) for m in self.modes},
            }
            for name, metric, fs in self.groups()
        }
        streaming = [m for m in self.modes if m.startswith("streaming")]
        return {
            "version": REPORT_VERSION,
            **self.meta,
            "modes": self.modes,
            "audio_seconds": round(self.audio_s, 3),
            "overall": overall,
            "latency": {m: self.latency(m) for m in streaming},
            "rtf": {m: round(self.rtf(m), 4) for m in self.modes},
            "files": [_file_dict(f) for f in self.files],
        }


def _score_dict(s: Score) -> dict[str, Any]:
    return {
        "rate": round(s.rate, 5),
        "errors": s.errors,
        "substitutions": s.substitutions,
        "deletions": s.deletions,
        "insertions": s.insertions,
        "ref_units": s.ref_units,
    }


def _file_dict(f: FileReport) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for mode, r in f.runs.items():
        d: dict[str, Any] = {"hypothesis": r.hypothesis, **_score_dict(r.score)}
        if r.latency is not None:
            d["latency"] = {
                "word_shown": [round(v, 3) for v in r.latency.shown],
                "word_committed": [round(v, 3) for v in r.latency.committed],
                "speech_end_to_final": [round(v, 3) for v in r.latency.final],
                "timed_words": r.latency.timed_words,
            }
        runs[mode] = d
    it = f.item
    return {
        "name": it.name,
        "audio": str(it.audio),
        "lang": it.lang,
        "metric": it.metric,
        "reference": it.reference,
        "seconds": round(f.seconds, 3),
        "runs": runs,
    }
