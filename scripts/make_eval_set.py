"""Build an evaluation set in the demo model's domain with espeak-ng, for ``glmasr-live eval``.

    python scripts/make_eval_set.py OUT|--out OUT [--seed 7] [--en 36] [--cmn 12] [--yue 12]

English command words and digits, Mandarin and Cantonese digits, spoken by held-out voices
(never seen in training), at -20 to -50 dBFS, some whispered, some in noise, some longer than
one of the demo model's 6 s encoder windows, some with two utterances. For each file OUT gets
``NAME.wav`` (16 kHz), ``NAME.txt`` (the reference), ``NAME.words.json`` (every word's start and
end, seconds) and a line in ``manifest.jsonl``. The same --seed gives the same set; a file's
content depends only on the seed, its language and its index, not on the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glmasr_live.devtools import synth
from glmasr_live.errors import GlmAsrLiveError
from glmasr_live.events import SAMPLE_RATE

LANGS = ("en", "cmn", "yue")
KINDS = ("short", "long", "two", "whisper", "short", "short")
"""File kinds, cycled by index: a few words; longer than the demo window (6 s) in one
utterance; two utterances with a pause between; whispered."""
LEVELS_DBFS = (-20.0, -28.0, -36.0, -44.0, -50.0)
NOISES = ("white", "pink", "brown")
WORD_S = {"en": 0.55, "cmn": 0.5, "yue": 0.5}  # rough seconds per word, to size utterances


@dataclass
class Recording:
    audio: np.ndarray
    words: list[str]
    spans: list[tuple[int, int]]  # samples, in the file
    voice: synth.Voice


def _voice(lang: str, kind: str, rng: np.random.Generator) -> synth.Voice:
    v = synth.random_voice(rng, heldout=True, lang=lang)
    if kind == "whisper":
        return synth.Voice(v.lang, "whisperf", v.speed, v.pitch)
    if v.whispered:  # whispers only where asked for, so the kinds stay what they say
        return synth.Voice(v.lang, "m7", v.speed, v.pitch)
    return v


def _n_words(lang: str, seconds: tuple[float, float], rng: np.random.Generator) -> int:
    return max(1, int(rng.uniform(*seconds) / WORD_S[lang]))


def _recording(lang: str, kind: str, rng: np.random.Generator) -> Recording:
    """Leading silence, one or two utterances (1.5-2.5 s apart), trailing silence."""
    voice = _voice(lang, kind, rng)
    cjk = voice.is_cjk
    if kind == "long":
        plan = [_n_words(lang, (8.0, 13.0), rng)]
    elif kind == "two":
        plan = [_n_words(lang, (1.0, 4.0), rng) for _ in range(2)]
    else:
        plan = [_n_words(lang, (0.8, 4.5), rng)]
    pieces = [np.zeros(int(rng.uniform(0.4, 1.0) * SAMPLE_RATE), np.float32)]
    pos = len(pieces[0])
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    for i, n in enumerate(plan):
        if i:
            pause = np.zeros(int(rng.uniform(1.5, 2.5) * SAMPLE_RATE), np.float32)
            pieces.append(pause)
            pos += len(pause)
        utt = synth.word_utterance(synth.random_words(rng, n, cjk), voice, rng)
        words += utt.words
        spans += [(pos + a, pos + b) for a, b in utt.spans]
        pieces.append(utt.audio)
        pos += len(utt.audio)
    pieces.append(np.zeros(int(1.2 * SAMPLE_RATE), np.float32))
    return Recording(np.concatenate(pieces), words, spans, voice)


def make_file(out: Path, seed: int, lang: str, index: int) -> dict[str, object]:
    """Write one file's wav, txt and words.json; its manifest record."""
    rng = np.random.default_rng([seed, LANGS.index(lang), index])
    kind = KINDS[index % len(KINDS)]
    rec = _recording(lang, kind, rng)
    level = LEVELS_DBFS[index % len(LEVELS_DBFS)]
    speech = np.concatenate([rec.audio[a:b] for a, b in rec.spans])
    audio = synth.set_level(rec.audio, level, active=speech)
    noise, snr = None, None
    if rng.random() < 0.5:
        noise, snr = str(rng.choice(NOISES)), round(float(rng.uniform(15.0, 30.0)), 1)
        audio = synth.add_noise(audio, level, snr, noise, rng)
    name = f"{lang}_{index:03d}"
    text = synth.join_words(rec.words, rec.voice.is_cjk)
    synth.write_wav(out / f"{name}.wav", audio)
    (out / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    timings = [
        {"word": w, "start": round(a / SAMPLE_RATE, 4), "end": round(b / SAMPLE_RATE, 4)}
        for w, (a, b) in zip(rec.words, rec.spans, strict=True)
    ]
    words_doc = {"text": text, "lang": lang, "words": timings}
    (out / f"{name}.words.json").write_text(
        json.dumps(words_doc, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return {
        "audio": f"{name}.wav",
        "text": text,
        "lang": lang,
        "words": f"{name}.words.json",
        "kind": kind,
        "voice": rec.voice.name,
        "speed": rec.voice.speed,
        "pitch": rec.voice.pitch,
        "level_dbfs": level,
        "noise": noise,
        "snr_db": snr,
        "seconds": round(len(audio) / SAMPLE_RATE, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, nargs="?", help="output directory (created)")
    ap.add_argument("--out", type=Path, dest="out_option", metavar="OUT", help="the same, as an option")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--en", type=int, default=36, help="English files")
    ap.add_argument("--cmn", type=int, default=12, help="Mandarin files")
    ap.add_argument("--yue", type=int, default=12, help="Cantonese files")
    args = ap.parse_args(argv)
    out: Path | None = args.out or args.out_option
    if out is None:
        ap.error("give the output directory: OUT or --out OUT")
    counts = {"en": args.en, "cmn": args.cmn, "yue": args.yue}
    if min(counts.values()) < 0 or not sum(counts.values()):
        ap.error("the counts must be >= 0 and not all 0")
    try:
        synth.require_espeak()
    except GlmAsrLiveError as e:
        print(f"make_eval_set: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    records = [make_file(out, args.seed, lang, i) for lang in LANGS for i in range(counts[lang])]
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    total = sum(float(str(r["seconds"])) for r in records)
    print(f"wrote {len(records)} files ({total:.0f} s of audio) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
