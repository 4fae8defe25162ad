"""Build the bundled demo recording (assets/demo.wav) in the demo model's domain.

    python scripts/make_demo_audio.py            # writes assets/demo.wav, demo.txt, demo.words.json

About 40 s: several voices, pauses between utterances, a whispered passage, Mandarin and
Cantonese digits, light noise. Deterministic (seeded); needs espeak-ng.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

SCRIPT = [
    # (voice, words, level dBFS)
    (synth.Voice("en-us", "m3", 150, 45), "hello please start one two three".split(), -22),
    (synth.Voice("en-gb-x-rp", "f2", 160, 60), "open blue please".split(), -26),
    (synth.Voice("en", "m1", 140, 40), "seven four nine zero two".split(), -24),
    (synth.Voice("en-us", "whisper", 130, 50), "stop go left right".split(), -42),
    (synth.Voice("cmn", "", 150, 50), list("三五七九"), -24),
    (synth.Voice("en-029", "f3", 165, 55), "green red up down next back".split(), -28),
    (synth.Voice("yue", "", 150, 50), list("一二八六"), -24),
    (synth.Voice("en-gb-x-gbclan", "m2", 155, 40), "eight six one five three two".split(), -30),
    (synth.Voice("en-us", "whisperf", 135, 55), "no stop back zero".split(), -45),
    (synth.Voice("en-us", "m5", 150, 45), "yes thank you close".split(), -24),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("assets"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pieces: list[np.ndarray] = [np.zeros(int(0.8 * SAMPLE_RATE), np.float32)]
    pos = len(pieces[0])
    words, lines = [], []
    for voice, ws, level in SCRIPT:
        ws = [w for w in ws if w in synth.EN_WORDS or w in synth.CJK_DIGITS]
        u = synth.word_utterance(ws, voice, rng, gap_s=(0.05, 0.15), long_pause_p=0.0)
        speech = synth.set_level(u.audio, level)
        pieces.append(speech)
        for w, (a, b) in zip(u.words, u.spans, strict=True):
            words.append({"word": w, "start": (pos + a) / SAMPLE_RATE, "end": (pos + b) / SAMPLE_RATE})
        lines.append(u.text)
        pos += len(speech)
        gap = np.zeros(int(rng.uniform(1.2, 2.2) * SAMPLE_RATE), np.float32)
        pieces.append(gap)
        pos += len(gap)
    audio = np.concatenate(pieces)
    audio = synth.add_noise(audio, -24.0, 45.0, "pink", rng)
    args.out.mkdir(parents=True, exist_ok=True)
    synth.write_wav(args.out / "demo.wav", audio)
    (args.out / "demo.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "demo.words.json").write_text(
        json.dumps(words, ensure_ascii=False, indent=0) + "\n", encoding="utf-8"
    )
    print(f"{len(audio) / SAMPLE_RATE:.1f} s, {len(lines)} utterances -> {args.out}/demo.wav")


if __name__ == "__main__":
    main()
