"""The VAD benchmark's second part: sound that moves (glmasr_live.devtools.noisesynth) instead of
stationary noise. Run by ``python -m glmasr_live.devtools.vadbench`` after the speech set, or alone:

    python -m glmasr_live.devtools.movingbench [--quick] [--json OUT] [--sensitivity X] [--no-silero]

Two kinds of file, written once as 16-bit WAV with a manifest under
``~/.cache/glmasr-live/vadbench/moving-<version>-<full|quick>``:
- noise only: 20 s of each kind (four music styles, typing, clicks, traffic, wind, doors,
  dishes, a fan sweeping speed) at two levels; scored by the share of time flagged as speech
  and the number of segments (each would be a final: a caption from no speech);
- speech over moving sound: utterances (English voiced, whispered, Cantonese; -25 to -55 dBFS)
  over each music style at 0, 5 and 10 dB speech-to-music ratio, and over typing, traffic and
  the fan at 5 dB (each kind in each mixture, three utterances per file: 36 per music SNR);
  scored by utterances caught whole (as in the speech set).
Target: <= 2 % of time flagged on every noise-only kind; speech over music caught >= 99 %.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from glmasr_live.audio.segmenter import SegmenterSettings
from glmasr_live.devtools import noisesynth, synth
from glmasr_live.devtools.vadbench import BenchFile, Detector, Tally, cache_root, detectors, score
from glmasr_live.events import SAMPLE_RATE

MOVING_VERSION = "v4"
NOISE_LEVELS = {"music": (-30, -45), "typing": (-35, -50), "clicks": (-35, -50), "doors": (-35, -50),
                "dishes": (-35, -50), "traffic": (-30, -45), "wind": (-30, -45), "fan-sweep": (-30, -45),
                "babble": (-35, -50)}  # fmt: skip
SPEECH_KINDS = ("voiced", "whisper", "yue")
SPEECH_LEVELS = (-25, -40, -55)
MUSIC_SNRS = (0.0, 5.0, 10.0)
OTHER_MIXES = ("typing", "traffic", "fan-sweep")
FLAG_TARGET = 0.02


def _levels(kind: str) -> tuple[int, int]:
    return NOISE_LEVELS["music" if kind.startswith("music") else kind]


def _speech_over(kind: str, level: float, noise: str, snr: float, n_utt: int, seed: int):
    from glmasr_live.devtools.vadbench import _voice

    rng = np.random.default_rng(seed)
    voice = _voice(kind, rng)
    pieces = [np.zeros(int(rng.uniform(1.0, 2.0) * SAMPLE_RATE), np.float32)]
    pos, utterances = len(pieces[0]), []
    for _ in range(n_utt):
        utt = synth.word_utterance(synth.random_words(rng, int(rng.integers(2, 7)), voice.is_cjk), voice, rng)
        utterances.append([(pos + a, pos + b) for a, b in utt.spans])
        pause = np.zeros(int(rng.uniform(1.0, 3.0) * SAMPLE_RATE), np.float32)
        pieces += [utt.audio, pause]
        pos += len(utt.audio) + len(pause)
    audio = np.concatenate(pieces)
    speech = np.concatenate([audio[a:b] for spans in utterances for a, b in spans])
    audio = synth.set_level(audio, level, active=speech)
    bed = noisesynth.make(noise, len(audio) / SAMPLE_RATE, level - snr, seed)[: len(audio)]
    bed = np.pad(bed, (0, len(audio) - len(bed)))  # seconds -> samples may round one short
    name = f"{kind}_{-level:.0f}dB_over_{noise}_{snr:.0f}dB_{seed}"
    mixed = np.clip(audio + bed, -1, 1).astype(np.float32)
    return mixed, BenchFile(name, kind, level, noise, snr, voice.name, utterances)


def _plan(quick: bool) -> list[tuple[str, dict]]:
    jobs: list[tuple[str, dict]] = []
    seconds = 10.0 if quick else 20.0
    for i, kind in enumerate(noisesynth.KINDS):
        levels = _levels(kind)[:1] if quick else _levels(kind)
        jobs += [("noise", {"kind": kind, "level": lv, "seconds": seconds, "seed": 100 + i}) for lv in levels]
    mixes = [(m, snr) for m in noisesynth.MUSIC for snr in MUSIC_SNRS] + [(o, 5.0) for o in OTHER_MIXES]
    if quick:
        mixes = mixes[::3]
    for j, (noise, snr) in enumerate(mixes):
        # The full set has every speech kind in every mixture, each at another level (v3 had
        # one file per mixture: 12 utterances per music SNR, too few to tell 99 % from 92 %).
        for r in range(1 if quick else len(SPEECH_KINDS)):
            kind = SPEECH_KINDS[(j + j // 3 + r) % 3]
            level = SPEECH_LEVELS[(j // 3 + r) % 3]
            seed = 201 + j if r == 0 else 300 + 3 * j + r
            jobs.append(("speech", {"kind": kind, "level": level, "noise": noise, "snr": snr, "seed": seed}))
    return jobs


def _make(job: str, p: dict) -> tuple[np.ndarray, BenchFile]:
    if job == "noise":
        audio = noisesynth.make(p["kind"], p["seconds"], p["level"], p["seed"])
        return audio, BenchFile(
            f"noise_{p['kind']}_{-p['level']}dB", "noise", p["level"], p["kind"], 0.0, "", []
        )
    return _speech_over(p["kind"], p["level"], p["noise"], p["snr"], 3, p["seed"])


def build_set(quick: bool = False, root: Path | None = None) -> tuple[Path, list[BenchFile]]:
    """The moving-sound set (generated on first use, then read from the cache)."""
    folder = (root or cache_root()) / f"moving-{MOVING_VERSION}-{'quick' if quick else 'full'}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        raw = json.loads(manifest.read_text())
        return folder, [
            BenchFile(**{**d, "utterances": [[tuple(w) for w in u] for u in d["utterances"]]}) for d in raw
        ]
    synth.require_espeak()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for job, params in _plan(quick):
        audio, meta = _make(job, params)
        synth.write_wav(folder / f"{meta.name}.wav", audio)
        files.append(meta)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(f) for f in files]))
    tmp.replace(manifest)
    return folder, files


def _segments(mask: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(mask.astype(np.int8), prepend=0) == 1))


def _score_all(dets: dict[str, Detector], folder: Path, files: list[BenchFile]) -> tuple[dict, dict]:
    noise: dict[str, dict[str, list[float]]] = {}  # kind -> method -> [flagged samples, samples, segments]
    mixes: dict[str, dict[str, Tally]] = {}  # "speech over X" -> method -> tally
    for meta in files:
        audio, _ = sf.read(folder / f"{meta.name}.wav", dtype="float32")
        for name, detect in dets.items():
            mask = detect(audio)
            if meta.kind == "noise":
                cell = noise.setdefault(meta.noise, {}).setdefault(name, [0.0, 0.0, 0.0])
                cell[0] += float(mask.sum())
                cell[1] += len(mask)
                cell[2] += _segments(mask)
            else:
                group = "music" if meta.noise.startswith("music") else meta.noise
                key = f"over {group} {meta.snr_db:.0f} dB"
                mixes.setdefault(key, {}).setdefault(name, Tally()).add(score(meta, mask))
    return noise, mixes


def run(
    quick: bool = False,
    settings: SegmenterSettings | None = None,
    silero: bool = True,
    root: Path | None = None,
) -> dict:
    """Every detector on the moving-sound set; the results as a JSON-ready dict."""
    folder, files = build_set(quick, root)
    dets = detectors(settings, silero)
    dets = {
        k: v
        for k, v in dets.items()
        if k in ("segmenter", "segmenter-none", "segmenter-frames", "webrtc0", "webrtc3", "silero")
    }
    noise, mixes = _score_all(dets, folder, files)
    flagged = {
        kind: {m: {"flagged": c[0] / max(c[1], 1), "segments": int(c[2])} for m, c in cell.items()}
        for kind, cell in noise.items()
    }
    caught = {
        key: {
            m: {"utterances": t.utterances, "caught": t.caught_share, "fa": t.fa_share}
            for m, t in cell.items()
        }
        for key, cell in sorted(mixes.items())
    }
    summary = {}
    for m in dets:
        worst_flag = max(flagged[k][m]["flagged"] for k in flagged)
        music = [caught[k][m]["caught"] for k in caught if k.startswith("over music")]
        summary[m] = {
            "worst_flagged": worst_flag,
            "music_caught": min(music, default=1.0),
            "noise_segments": sum(flagged[k][m]["segments"] for k in flagged),
            "targets_met": worst_flag <= FLAG_TARGET and min(music, default=1.0) >= 0.99,
        }
    return {
        "version": MOVING_VERSION,
        "quick": quick,
        "flagged": flagged,
        "caught": caught,
        "summary": summary,
    }


def format_table(result: dict) -> str:
    methods = list(result["summary"])
    head = f"{'noise only: kind':<22}" + "".join(f"{m:>19}" for m in methods)
    lines = ["% of time flagged as speech (segments)", head, "-" * len(head)]
    for kind, cell in result["flagged"].items():
        vals = "".join(f"{100 * cell[m]['flagged']:>13.1f} ({cell[m]['segments']:>3})" for m in methods)
        lines.append(f"{kind:<22}{vals}")
    lines += [
        "",
        "speech over moving sound: caught whole % / false alarms in pauses %",
        head.replace("noise only: kind", "mixture (utts)    "),
        "-" * len(head),
    ]
    for key, cell in result["caught"].items():
        n = next(iter(cell.values()))["utterances"]
        vals = "".join(f"{100 * cell[m]['caught']:>12.1f} /{100 * cell[m]['fa']:>5.1f}" for m in methods)
        lines.append(f"{key + f' ({n})':<22}{vals}")
    s = result["summary"]
    lines.append("-" * len(head))
    lines.append(
        f"{'worst kind flagged %':<22}" + "".join(f"{100 * s[m]['worst_flagged']:>19.1f}" for m in methods)
    )
    lines.append(
        f"{'music mix caught %':<22}" + "".join(f"{100 * s[m]['music_caught']:>19.1f}" for m in methods)
    )
    lines.append(
        f"{'targets met':<22}" + "".join(f"{'yes' if s[m]['targets_met'] else 'no':>19}" for m in methods)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glmasr_live.devtools.movingbench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a small set (one level, 10 s files)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--sensitivity", type=float, default=0.5, help="the segmenter's sensitivity (0..1)")
    parser.add_argument("--no-silero", action="store_true", help="leave silero-vad out even if installed")
    args = parser.parse_args(argv)
    result = run(args.quick, SegmenterSettings.from_sensitivity(args.sensitivity), not args.no_silero)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
