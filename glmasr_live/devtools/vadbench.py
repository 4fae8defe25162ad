"""VAD benchmark: the segmenter against raw webrtcvad (modes 0-3) and silero-vad (when installed).

    python -m glmasr_live.devtools.vadbench [--quick] [--json OUT] [--sensitivity X] [--no-silero] [--padded]

The labelled set is made with espeak-ng (glmasr_live.devtools.synth): recordings of several utterances
separated by 1-3 s pauses, for each voice kind (English voiced, whispered, Mandarin,
Cantonese) and speech level (-20 to -60 dBFS, RMS over the words), with white, pink or brown
noise at 10-25 dB SNR; plus noise-only files (and digital silence). It is written once as
16-bit WAV files with a manifest under ``~/.cache/glmasr-live/vadbench/<version>``
($GLMASR_LIVE_CACHE overrides the root), so ``glmasr-live vad`` can be run on any of them.

Scores:
    caught: share of utterances with >= 90 % of their words' samples inside detected speech.
    fa: detected share of the time more than 0.4 s away from any utterance (first word start
        to last word end), i.e. false alarms in the pauses.
    noise fa: detected share of the noise-only files.
Targets: caught >= 99 % at every level, fa <= 1 %, noise fa <= 0.5 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from glmasr_live.audio import speechprob
from glmasr_live.audio.segmenter import SegmenterSettings, find_segments
from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

BENCH_VERSION = "v1"
LEVELS = (-20, -30, -40, -50, -58, -60)
QUICK_LEVELS = (-20, -40, -58)
KINDS = ("voiced", "whisper", "cmn", "yue")
COLOURS = ("white", "pink", "brown")
SNR_RANGE_DB = (10.0, 25.0)
CAUGHT_SHARE = 0.9  # an utterance is caught whole when this share of its words is detected
FAR_S = 0.4  # false alarms count only this far (s) from any utterance
TARGETS = {"caught": 0.99, "fa": 0.01, "noise_fa": 0.005}
FRAME_S = 0.03  # the segmenter's frame, for the cost per frame
Detector = Callable[[np.ndarray], np.ndarray]  # audio -> per-sample bool mask of speech


@dataclass
class BenchFile:
    """One labelled recording. ``utterances`` holds each utterance's word spans in samples."""

    name: str
    kind: str  # a voice kind, or "noise" for noise-only files
    level: float  # speech level (dBFS); noise-only files: the noise level
    noise: str
    snr_db: float
    voice: str
    utterances: list[list[tuple[int, int]]]


# ---------------------------------------------------------------------------- the labelled set


def cache_root() -> Path:
    root = os.environ.get("GLMASR_LIVE_CACHE") or Path.home() / ".cache" / "glmasr-live"
    return Path(root) / "vadbench"


def _voice(kind: str, rng: np.random.Generator) -> synth.Voice:
    if kind == "voiced":
        variants = [
            v for v in synth.TRAIN_VARIANTS + synth.HELDOUT_VARIANTS if v not in synth.WHISPER_VARIANTS
        ]
        lang, variant = str(rng.choice(synth.EN_BASES)), str(rng.choice(variants))
    elif kind == "whisper":
        lang = str(rng.choice(["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "cmn", "yue"]))
        variant = str(rng.choice(sorted(synth.WHISPER_VARIANTS)))
    else:
        lang, variant = kind, str(rng.choice(["", "m3", "f2", "m7", "f4"]))
    return synth.Voice(lang, variant, int(rng.integers(130, 200)), int(rng.integers(30, 70)))


def _speech_file(kind: str, level: float, colour: str, n_utt: int, seed: int) -> tuple[np.ndarray, BenchFile]:
    rng = np.random.default_rng(seed)
    voice = _voice(kind, rng)
    pieces = [np.zeros(int(rng.uniform(1.0, 2.0) * SAMPLE_RATE), np.float32)]
    pos, utterances = len(pieces[0]), []
    for _ in range(n_utt):
        words = synth.random_words(rng, int(rng.integers(2, 7)), voice.is_cjk)
        utt = synth.word_utterance(words, voice, rng)
        utterances.append([(pos + a, pos + b) for a, b in utt.spans])
        pause = np.zeros(int(rng.uniform(1.0, 3.0) * SAMPLE_RATE), np.float32)
        pieces += [utt.audio, pause]
        pos += len(utt.audio) + len(pause)
    audio = np.concatenate(pieces)
    speech = np.concatenate([audio[a:b] for spans in utterances for a, b in spans])
    audio = synth.set_level(audio, level, active=speech)
    snr = float(rng.uniform(*SNR_RANGE_DB))
    audio = synth.add_noise(audio, level, snr, colour, rng)
    name = f"{kind}_{-level:.0f}dB_{colour}_{seed}"
    return audio, BenchFile(name, kind, level, colour, round(snr, 1), voice.name, utterances)


def _noise_file(colour: str, level: float, seconds: float, seed: int) -> tuple[np.ndarray, BenchFile]:
    n = int(seconds * SAMPLE_RATE)
    if colour == "silence":
        audio = np.zeros(n, np.float32)
    else:
        audio = synth.noise(colour, n, np.random.default_rng(seed)) * np.float32(10 ** (level / 20))
    return audio, BenchFile(f"noise_{colour}_{-level:.0f}dB", "noise", level, colour, 0.0, "", [])


def _plan(quick: bool) -> list[Callable[[], tuple[np.ndarray, BenchFile]]]:
    levels = QUICK_LEVELS if quick else LEVELS
    n_utt = 3 if quick else 6
    jobs: list[Callable[[], tuple[np.ndarray, BenchFile]]] = []
    seed = 0
    for level in levels:
        for k, kind in enumerate(KINDS):
            # Quick: one recording per cell, the noise colour rotating; full: every colour.
            colours = [COLOURS[(k + levels.index(level)) % 3]] if quick else list(COLOURS)
            for colour in colours:
                seed += 1
                jobs.append(functools.partial(_speech_file, kind, level, colour, n_utt, seed))
    noise_levels = (-40, -70) if quick else (-30, -50, -70)
    for colour in COLOURS:
        for level in noise_levels:
            seed += 1
            jobs.append(functools.partial(_noise_file, colour, level, 10.0 if quick else 20.0, seed))
    jobs.append(functools.partial(_noise_file, "silence", -120, 10.0, 0))
    return jobs


def build_set(quick: bool = False, root: Path | None = None) -> tuple[Path, list[BenchFile]]:
    """The labelled set (generated on first use, then read from the cache)."""
    folder = (root or cache_root()) / f"{BENCH_VERSION}-{'quick' if quick else 'full'}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        raw = json.loads(manifest.read_text())
        files = [
            BenchFile(**{**d, "utterances": [[tuple(w) for w in u] for u in d["utterances"]]}) for d in raw
        ]
        return folder, files
    synth.require_espeak()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for job in _plan(quick):
        audio, meta = job()
        synth.write_wav(folder / f"{meta.name}.wav", audio)
        files.append(meta)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(f) for f in files]))
    tmp.replace(manifest)  # a half-written set is never taken for a finished one
    return folder, files


# ---------------------------------------------------------------------------- detectors


def _mask(n: int, segments: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(n, bool)
    for a, b in segments:
        m[max(a, 0) : b] = True
    return m


def segmenter_detector(settings: SegmenterSettings | None = None) -> Detector:
    return lambda audio: _mask(len(audio), find_segments(audio, settings))


def webrtc_detector(mode: int) -> Detector:
    """Raw webrtcvad: each 30 ms frame as it votes, no smoothing, no gain."""
    import webrtcvad

    def detect(audio: np.ndarray) -> np.ndarray:
        vad, n = webrtcvad.Vad(mode), 480
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        votes = [vad.is_speech(pcm[i : i + n].tobytes(), SAMPLE_RATE) for i in range(0, len(pcm) - n + 1, n)]
        mask = np.repeat(np.array(votes, bool), n)
        return np.concatenate([mask, np.zeros(len(audio) - len(mask), bool)])

    return detect


def padded(detect: Detector, seconds: float = 0.3) -> Detector:
    """``detect`` with every detection widened by ``seconds`` on both sides (the segmenter's
    pre- and post-roll), to compare raw webrtcvad fairly on "caught whole"."""
    n = int(seconds * SAMPLE_RATE)

    def wide(audio: np.ndarray) -> np.ndarray:
        mask = detect(audio)
        # Any detection within +-n samples: a window sum over a running count (O(len)).
        count = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
        idx = np.arange(len(mask))
        hi, lo = np.minimum(idx + n + 1, len(mask)), np.maximum(idx - n, 0)
        return (count[hi] - count[lo]) > 0

    return wide


def silero_detector() -> Detector | None:
    """silero-vad with its default settings, or None when it is not installed."""
    from glmasr_live.asr.silero import silero_speech

    speech = silero_speech()
    if speech is None:
        return None
    return lambda audio: _mask(len(audio), speech(audio))


def detectors(
    settings: SegmenterSettings | None, silero: bool = True, pad: bool = False
) -> dict[str, Detector]:
    found = {"segmenter": segmenter_detector(settings)}
    if silero and speechprob.unavailable_reason() is None:
        # The other --vad-model choices: the two tests alone, and silero judging every frame.
        base = settings or SegmenterSettings()
        found["segmenter-none"] = segmenter_detector(dataclasses.replace(base, confirm=False))
        frames = dataclasses.replace(base, learned=True, confirm=False)
        found["segmenter-frames"] = segmenter_detector(frames)
    found.update({f"webrtc{m}": webrtc_detector(m) for m in range(4)})
    if pad:
        found.update({f"webrtc{m}+pad": padded(webrtc_detector(m)) for m in (0, 3)})
    sil = silero_detector() if silero else None
    if sil is not None:
        found["silero"] = sil
    return found


# ---------------------------------------------------------------------------- scoring


@dataclass
class Tally:
    """Counts for one method over some files: utterances caught and false-alarm samples."""

    utterances: int = 0
    caught: int = 0
    words: int = 0
    clipped: int = 0  # words not wholly inside detected speech
    fa_samples: int = 0
    far_samples: int = 0

    def add(self, other: Tally) -> None:
        for name in ("utterances", "caught", "words", "clipped", "fa_samples", "far_samples"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def caught_share(self) -> float:
        return self.caught / self.utterances if self.utterances else 1.0

    @property
    def clipped_share(self) -> float:
        return self.clipped / self.words if self.words else 0.0

    @property
    def fa_share(self) -> float:
        return self.fa_samples / self.far_samples if self.far_samples else 0.0


def score(meta: BenchFile, mask: np.ndarray) -> Tally:
    """Score one file's detected-speech mask against its labels."""
    far = np.ones(len(mask), bool)
    margin = int(FAR_S * SAMPLE_RATE)
    t = Tally()
    for spans in meta.utterances:
        far[max(spans[0][0] - margin, 0) : spans[-1][1] + margin] = False
        inside_words = [int(mask[a:b].sum()) for a, b in spans]
        inside, total = sum(inside_words), sum(b - a for a, b in spans)
        t.words += len(spans)
        t.clipped += sum(n < b - a for n, (a, b) in zip(inside_words, spans, strict=True))
        t.utterances += 1
        t.caught += inside >= CAUGHT_SHARE * total
    t.fa_samples, t.far_samples = int(mask[far].sum()), int(far.sum())
    return t


def run(
    quick: bool = False,
    settings: SegmenterSettings | None = None,
    silero: bool = True,
    root: Path | None = None,
    pad: bool = False,
) -> dict:
    """Run every detector on the labelled set; return the results as a JSON-ready dict."""
    folder, files = build_set(quick, root)
    dets = detectors(settings, silero, pad)
    cells: dict[tuple[str, float, str], Tally] = {}
    noise: dict[str, Tally] = {name: Tally() for name in dets}
    # Detector time (scoring not included) on speech files and on noise-only ones: where the
    # segmenter's learned model sleeps through the noise, the two differ.
    seconds = {name: {"speech": 0.0, "noise": 0.0} for name in dets}
    audio_s = {"speech": 0.0, "noise": 0.0}
    for meta in files:
        audio, _ = sf.read(folder / f"{meta.name}.wav", dtype="float32")
        group = "noise" if meta.kind == "noise" else "speech"
        audio_s[group] += len(audio) / SAMPLE_RATE
        for name, detect in dets.items():
            t0 = time.perf_counter()
            mask = detect(audio)
            seconds[name][group] += time.perf_counter() - t0
            tally = score(meta, mask)
            if meta.kind == "noise":
                noise[name].fa_samples += int(tally.fa_samples)
                noise[name].far_samples += int(tally.far_samples)
            else:
                cells.setdefault((name, meta.level, meta.kind), Tally()).add(tally)
    return _report(list(dets), cells, noise, _speed(seconds, audio_s), quick)


def _speed(seconds: dict[str, dict[str, float]], audio_s: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per detector: x real time over all files, and ms per 30 ms frame on each group."""
    frames = {g: max(a / FRAME_S, 1.0) for g, a in audio_s.items()}
    return {
        name: {
            "x_real_time": sum(audio_s.values()) / max(sum(t.values()), 1e-9),
            "ms_per_frame_speech": 1000 * t["speech"] / frames["speech"],
            "ms_per_frame_noise": 1000 * t["noise"] / frames["noise"],
        }
        for name, t in seconds.items()
    }


def _report(
    methods: list[str], cells: dict, noise: dict[str, Tally], speed: dict[str, dict[str, float]], quick: bool
) -> dict:
    rows = [
        {
            "method": m,
            "level": lv,
            "kind": k,
            "utterances": t.utterances,
            "caught": t.caught_share,
            "fa": t.fa_share,
        }
        for (m, lv, k), t in sorted(cells.items(), key=lambda c: (-c[0][1], KINDS.index(c[0][2]), c[0][0]))
    ]
    summary = {}
    for m in methods:
        per_level: dict[float, Tally] = {}
        total = Tally()
        for (mm, lv, _), t in cells.items():
            if mm == m:
                per_level.setdefault(lv, Tally()).add(t)
                total.add(t)
        worst = min((t.caught_share for t in per_level.values()), default=1.0)
        met = (
            worst >= TARGETS["caught"]
            and total.fa_share <= TARGETS["fa"]
            and noise[m].fa_share <= TARGETS["noise_fa"]
        )
        summary[m] = {
            "caught_worst_level": worst,
            "caught": total.caught_share,
            "fa": total.fa_share,
            "words_clipped": total.clipped_share,
            "noise_fa": noise[m].fa_share,
            **speed[m],
            "targets_met": met,
        }
    return {"version": BENCH_VERSION, "quick": quick, "targets": TARGETS, "rows": rows, "summary": summary}


def format_table(result: dict) -> str:
    """The result as a plain-text table: 'caught% / fa%' per method, rows by level and kind."""
    methods = list(result["summary"])
    head = f"{'level':>6} {'kind (utts)':<13}" + "".join(f"{m:>19}" for m in methods)
    lines = ["caught whole % / false alarms in pauses %", head, "-" * len(head)]
    by_cell: dict[tuple[float, str], dict[str, dict]] = {}
    for r in result["rows"]:
        by_cell.setdefault((r["level"], r["kind"]), {})[r["method"]] = r
    for (level, kind), cell in by_cell.items():
        n = next(iter(cell.values()))["utterances"]
        vals = "".join(f"{100 * cell[m]['caught']:>10.1f} /{100 * cell[m]['fa']:>6.2f}" for m in methods)
        lines.append(f"{level:>6.0f} {kind + f' ({n})':<13}{vals}")
    lines.append("-" * len(head))
    s = result["summary"]
    lines.append(
        f"{'worst level caught %':<20}"
        + "".join(f"{100 * s[m]['caught_worst_level']:>19.1f}" for m in methods)
    )
    lines.append(f"{'all fa %':<20}" + "".join(f"{100 * s[m]['fa']:>19.2f}" for m in methods))
    lines.append(
        f"{'words clipped %':<20}" + "".join(f"{100 * s[m]['words_clipped']:>19.2f}" for m in methods)
    )
    lines.append(f"{'noise-only fa %':<20}" + "".join(f"{100 * s[m]['noise_fa']:>19.2f}" for m in methods))
    lines.append(f"{'x real time':<20}" + "".join(f"{s[m]['x_real_time']:>19.0f}" for m in methods))
    for group, label in (("speech", "ms/frame speech"), ("noise", "ms/frame noise-only")):
        key = f"ms_per_frame_{group}"
        lines.append(f"{label:<20}" + "".join(f"{s[m][key]:>19.3f}" for m in methods))
    lines.append(
        f"{'targets met':<20}" + "".join(f"{'yes' if s[m]['targets_met'] else 'no':>19}" for m in methods)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glmasr_live.devtools.vadbench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small set (3 levels, ~3 min of audio)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--sensitivity", type=float, default=0.5, help="the segmenter's sensitivity (0..1)")
    parser.add_argument("--endpoint", type=float, default=None, help="the segmenter's endpoint (s)")
    parser.add_argument("--no-silero", action="store_true", help="leave silero-vad out even if installed")
    parser.add_argument(
        "--padded", action="store_true", help="add webrtcvad 0 and 3 widened by 0.3 s each side"
    )
    args = parser.parse_args(argv)
    settings = SegmenterSettings.from_sensitivity(args.sensitivity, args.endpoint)
    result = run(args.quick, settings, not args.no_silero, pad=args.padded)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
