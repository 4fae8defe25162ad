"""The caption gate's benchmark: captions from sound that is not speech, and words it costs.

Every file goes through the live stream policy (``replay``) with the caption gate on; what the
gate hid is read from the policy's log, so one run gives both sides (the gate acts after the
model: the decoder's steps are the same with it off). Reported per kind of sound: finals with
text the captioner would show without the gate and with it, and on speech files the share of
words the gate hid (every word a hidden final held counts, right or wrong: an upper bound of
real words suppressed).

    python -m glmasr_live.devtools.gatebench [--quick] [--json OUT] [--model demo]
        [--vad-model silero|silero-frames|none]

With the default segmenter (silero confirms each utterance) little non-speech reaches the
model at all; ``--vad-model none`` measures the gate where the segmenter opens on music.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glmasr_live.devtools import movingbench, noisesynth, vadbench
from glmasr_live.events import SAMPLE_RATE, is_cjk
from glmasr_live.option_table import VAD_MODEL, VAD_MODELS, VAD_SENSITIVITY

SPEECH_LEVELS = (-20, -40, -58)


@dataclass
class Tally:
    """One kind of sound: finals with text shown with the gate off and on, their words."""

    files: int = 0
    audio_s: float = 0.0
    finals_off: int = 0
    finals_on: int = 0
    words_off: int = 0
    words_on: int = 0
    words_real_hidden: int = 0  # words of hidden finals whose audio holds real speech
    hidden: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "hidden"} | {"hidden_examples": self.hidden[:5]}


def word_count(text: str) -> int:
    """Words of Latin-script text, characters of Chinese (what WER and CER count)."""
    return sum(1 for ch in text if is_cjk(ch)) + len([w for w in text.split() if not all(map(is_cjk, w))])


def _on_speech(v: Any, spans: list[tuple[int, int]]) -> bool:
    """Whether a hidden final's audio overlaps a spoken word (a real word was hidden)."""
    return any(a < v.end and v.start < b for a, b in spans)


def files(quick: bool) -> Iterator[tuple[str, str, np.ndarray, list[tuple[int, int]]]]:
    """(group, kind, audio, word spans): moving non-speech, then speech (clean, noisy, over
    music)."""
    seconds = 10.0 if quick else 20.0
    for i, kind in enumerate(noisesynth.KINDS):
        levels = movingbench.NOISE_LEVELS["music" if kind.startswith("music") else kind]
        for level in levels[:1] if quick else levels:
            yield "noise", kind, noisesynth.make(kind, seconds, level, seed=100 + i), []
    for j, kind in enumerate(vadbench.KINDS):
        for level in SPEECH_LEVELS[::2] if quick else SPEECH_LEVELS:
            audio, meta = vadbench._speech_file(
                kind, level, ("white", "pink", "brown")[j % 3], 4 if quick else 6, 28 + j
            )
            yield "speech", kind, audio, [w for u in meta.utterances for w in u]
    for j, music in enumerate(noisesynth.MUSIC[::2] if quick else noisesynth.MUSIC):
        kind = movingbench.SPEECH_KINDS[j % len(movingbench.SPEECH_KINDS)]
        audio, meta = movingbench._speech_over(kind, -30, music, 10.0, 3, 300 + j)
        yield "speech", f"{kind} over {music} 10 dB", audio, [w for u in meta.utterances for w in u]


def run(engine: Any, quick: bool = False, vad_model: str = VAD_MODEL) -> dict[str, Any]:
    """Every file through the stream policy with the gate on; the tallies as a JSON-ready dict."""
    from glmasr_live.asr.streaming import StreamingDecoder, StreamingSettings
    from glmasr_live.audio.segmenter_settings import SegmenterSettings
    from glmasr_live.policy import StreamPolicy
    from glmasr_live.replay import replay

    decoder = StreamingDecoder(engine, StreamingSettings())
    tallies: dict[tuple[str, str], Tally] = {}
    t0 = time.perf_counter()
    for group, kind, audio, spans in files(quick):
        policy = StreamPolicy(segmenter=SegmenterSettings.from_sensitivity(VAD_SENSITIVITY, None, vad_model))
        shown = [e.text for e in replay(audio, decoder, policy=policy) if e.type == "final" and e.text]
        hidden = [v.text for v in policy.gate_log if v.kind == "final" and v.text.strip()]
        t = tallies.setdefault((group, kind), Tally())
        t.words_real_hidden += sum(
            word_count(v.text) for v in policy.gate_log if v.kind == "final" and _on_speech(v, spans)
        )
        t.files += 1
        t.audio_s += len(audio) / SAMPLE_RATE
        t.finals_on += len(shown)
        t.finals_off += len(shown) + len(hidden)
        t.words_on += sum(map(word_count, shown))
        t.words_off += sum(map(word_count, shown + hidden))
        t.hidden += hidden
    return _summary(tallies, time.perf_counter() - t0)


def _summary(tallies: dict[tuple[str, str], Tally], seconds: float) -> dict[str, Any]:
    def total(group: str) -> Tally:
        out = Tally()
        for (g, _), t in tallies.items():
            if g == group:
                for k in (
                    "files",
                    "audio_s",
                    "finals_off",
                    "finals_on",
                    "words_off",
                    "words_on",
                    "words_real_hidden",
                ):
                    setattr(out, k, getattr(out, k) + getattr(t, k))
        return out

    noise, speech = total("noise"), total("speech")
    return {
        "rows": [{"group": g, "kind": k, **t.as_dict()} for (g, k), t in tallies.items()],
        "noise_finals_off": noise.finals_off,
        "noise_finals_on": noise.finals_on,
        "speech_words_hidden": (speech.words_off - speech.words_on) / max(speech.words_off, 1),
        "speech_real_words_hidden": speech.words_real_hidden / max(speech.words_off, 1),
        "speech_words": speech.words_off,
        "compute_s": round(seconds, 1),
    }


def format_table(result: dict[str, Any]) -> str:
    head = f"{'group':<7} {'kind':<30} {'finals off -> on':>17} {'words off -> on':>16}  hidden, e.g."
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        example = "; ".join(repr(h) for h in r["hidden_examples"][:2])
        lines.append(
            f"{r['group']:<7} {r['kind']:<30} {r['finals_off']:>8} -> {r['finals_on']:<6} "
            f"{r['words_off']:>7} -> {r['words_on']:<6}  {example[:60]}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"non-speech finals shown: {result['noise_finals_off']} without the gate, {result['noise_finals_on']} with it"
    )
    lines.append(
        f"speech files: {100 * result['speech_words_hidden']:.2f} % of {result['speech_words']} words hidden, "
        f"{100 * result['speech_real_words_hidden']:.2f} % on real speech (target <= 0.5 %; the rest in pauses)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m glmasr_live.devtools.gatebench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="a small set (one level per kind, 10 s files)")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")
    p.add_argument("--model", default="demo", help="model (default: the bundled demo model)")
    p.add_argument("--vad-model", default=VAD_MODEL, choices=VAD_MODELS, help="the segmenter (as live)")
    args = p.parse_args(argv)
    from glmasr_live.devtools.bench import build_engine

    result = run(build_engine(args.model, "auto", "auto"), args.quick, args.vad_model)
    result["model"], result["vad_model"] = args.model, args.vad_model
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
