"""The offline benchmark: segmented vs whole vs streaming on long recordings, throughput by
batch size, and how close the cue times come to the true word times. No torch here: the
engine comes in; ``glmasr-live bench-offline`` (``commands/bench_offline.py``) drives it.

Recordings are built by ``glmasr_live.devtools.longform`` (every word's time known). Error rates:
WER over words and CER over characters (spaces removed), after the eval normalisation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glmasr_live.devtools.longform import LongRecording, TimedWord
from glmasr_live.events import SAMPLE_RATE, join_text
from glmasr_live.offline import transcribe_recordings
from glmasr_live.pieces import FileTranscript, Segment


@dataclass(frozen=True)
class Rates:
    wer: float
    cer: float


def rates(reference: str, hypothesis: str) -> Rates:
    import jiwer

    from glmasr_live.devtools.eval import normalize

    ref, hyp = normalize(reference), normalize(hypothesis)
    cer = float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", ""))) if ref else float(bool(hyp))
    return Rates(round(float(jiwer.wer(ref, hyp)), 5), round(cer, 5))


def blocks(audio: np.ndarray, block_s: float = 2.0) -> Iterator[np.ndarray]:
    n = int(block_s * SAMPLE_RATE)
    for k in range(0, len(audio), n):
        yield audio[k : k + n]


def segmented(
    engine: Any, recs: Sequence[LongRecording], batch: int
) -> tuple[list[FileTranscript], float, float]:
    """(transcripts, model seconds, wall seconds) of the segmented path over ``recs``."""
    spent = 0.0

    def model(clips: list[np.ndarray], caps: list[int]) -> list[Any]:
        nonlocal spent
        t0 = time.perf_counter()
        out = engine.transcribe(clips, max_new_tokens=caps)
        spent += time.perf_counter() - t0
        return list(out)

    t0 = time.perf_counter()
    got = list(transcribe_recordings([blocks(r.audio) for r in recs], model, engine.max_new_tokens,
                                     engine.window_samples, batch))  # fmt: skip
    return got, spent, time.perf_counter() - t0


def whole(engine: Any, rec: LongRecording) -> tuple[str | None, float]:
    if rec.seconds > engine.whole_limit_seconds():
        return None, 0.0
    t0 = time.perf_counter()
    text = engine.transcribe([rec.audio], [engine.max_new_tokens(rec.seconds)])[0].text
    return text, time.perf_counter() - t0


def streaming(engine: Any, rec: LongRecording) -> tuple[str, float]:
    from glmasr_live.asr.streaming import StreamingDecoder
    from glmasr_live.replay import replay

    t0 = time.perf_counter()
    text = ""
    for ev in replay(rec.audio, StreamingDecoder(engine)):
        if ev.type == "final":
            text = join_text(text, ev.text)
    return text, time.perf_counter() - t0


def accuracy(engine: Any, named: Sequence[tuple[str, LongRecording]], batch: int = 8) -> list[dict[str, Any]]:
    """Per recording: seconds, utterances, and WER/CER (with compute s) of each mode."""
    results, _, _ = segmented(engine, [r for _, r in named], batch)
    rows = []
    for (name, rec), seg in zip(named, results, strict=True):
        w_text, w_s = whole(engine, rec)
        s_text, s_s = streaming(engine, rec)
        row: dict[str, Any] = {"name": name, "seconds": round(rec.seconds, 1), "utterances": len(rec.utterances),
                               "words": len(rec.words), "segmented": vars(rates(rec.reference, seg.text))}  # fmt: skip
        row["whole"] = (
            "refused (over the one-prompt limit)" if w_text is None else vars(rates(rec.reference, w_text))
        )
        row["streaming"] = {**vars(rates(rec.reference, s_text)), "compute_s": round(s_s, 2)}
        if w_text is not None:
            row["whole"]["compute_s"] = round(w_s, 2)
        row["cue_timing"] = timing_error(seg.segments, rec.words)
        rows.append(row)
    return rows


def throughput(engine: Any, rec: LongRecording, batches: Sequence[int]) -> list[dict[str, Any]]:
    """Audio seconds per compute second of the segmented path at each batch size."""
    rows = []
    for b in batches:
        _, model_s, wall_s = segmented(engine, [rec], b)
        rows.append({"batch": b, "audio_s": round(rec.seconds, 1), "model_s": round(model_s, 2),
                     "wall_s": round(wall_s, 2), "x_realtime": round(rec.seconds / wall_s, 1)})  # fmt: skip
    base = rows[0]["x_realtime"] if rows else 1.0
    for r in rows:
        r["vs_batch_1"] = round(r["x_realtime"] / base, 2)
    return rows


# ---------------------------------------------------------------------------- cue timing


def timing_error(segments: Sequence[Segment], words: Sequence[TimedWord]) -> dict[str, Any]:
    """How far estimated word times are from the true ones (seconds), over the pieces whose
    text came out exactly right: the speech-stretch estimate and, for comparison, the naive one
    (words spread evenly over the whole piece)."""
    from dataclasses import replace

    from glmasr_live.captions.cues import units
    from glmasr_live.devtools.eval import text_units

    errs: dict[str, list[float]] = {"speech": [], "even": []}
    pieces = 0
    for seg in segments:
        truth = [w for w in words if seg.start <= (w.start + w.end) / 2 < seg.end]
        if not truth or text_units(seg.text) != [u for w in truth for u in text_units(w.word)]:
            continue
        pieces += 1
        for kind, s in (("speech", seg), ("even", replace(seg, speech=()))):
            est = units(s)
            if len(est) != len(truth):
                continue
            for u, w in zip(est, truth, strict=True):
                errs[kind] += [abs(u.start - w.start), abs(u.end - w.end)]
    return {"pieces_exact": pieces, "of_pieces": len(segments),
            **{k: _summary(v) for k, v in errs.items()}}  # fmt: skip


def _summary(v: list[float]) -> dict[str, float | int | None]:
    if not v:
        return {"n": 0, "median_s": None, "p90_s": None}
    p50, p90 = np.percentile(np.asarray(v), [50, 90])
    return {"n": len(v), "median_s": round(float(p50), 3), "p90_s": round(float(p90), 3)}
