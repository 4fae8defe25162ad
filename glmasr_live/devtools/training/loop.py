"""The model, the training loop, checkpoint averaging, saving, and the held-out table."""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import GlmAsrForConditionalGeneration

from glmasr_live.asr.tiny import build_tiny_model
from glmasr_live.devtools import synth
from glmasr_live.devtools.training.batches import Batcher
from glmasr_live.devtools.training.losses import forward_losses, use_float32_encoder_attention
from glmasr_live.devtools.training.targets import WORD_CLASSES
from glmasr_live.devtools.training.voices import Bank, Synthesizer

CHUNK_S = 6  # default window length (s): a whole number of audio tokens at the 160- and 240-sample hops
SIZES = dict(
    audio_hidden=144,
    audio_layers=3,
    audio_heads=4,
    text_hidden=160,
    text_layers=3,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate=480,
)


def build_model(tok: Any, args: argparse.Namespace) -> Any:
    """The model to train (``args``: the parsed flags), in training mode: fresh from ``--seed``,
    or (``--init-from``) a saved checkpoint's weights, or only its encoder (``--reinit-lm``)."""
    model = build_tiny_model(tok, seed=args.seed, **SIZES)
    if args.init_from:
        trained = GlmAsrForConditionalGeneration.from_pretrained(args.init_from)
        part = trained.model.audio_tower if args.reinit_lm else trained
        target = model.model.audio_tower if args.reinit_lm else model
        target.load_state_dict(part.state_dict())
        print(f"initialised {'encoder' if args.reinit_lm else 'model'} from {args.init_from}", flush=True)
    if args.align_weight:
        model.model.language_model.set_attn_implementation("eager")  # attention weights for the loss
    if args.bf16:
        use_float32_encoder_attention(model)
    model.train()
    return model


def lr_factor(step: int, warm: int, steps: int) -> float:
    """Linear warm-up over ``warm`` steps, then a cosine down to 5 % at the last step."""
    if step < warm:
        return (step + 1) / warm
    p = (step - warm) / max(1, steps - warm)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))


def corrupt_at(step: int, args: argparse.Namespace) -> float:
    """Corrupted share of teacher forcing: from --corrupt at the start to --corrupt-end."""
    return args.corrupt + (args.corrupt_end - args.corrupt) * step / max(1, args.steps - 1)


class RunningMeans:
    """Exponential moving averages of the four losses, for the progress lines."""

    def __init__(self) -> None:
        self.values: list[float] | None = None

    def update(self, losses: tuple[torch.Tensor, ...]) -> list[float]:
        new = [x.item() for x in losses]
        self.values = (
            new
            if self.values is None
            else [0.98 * e + 0.02 * x for e, x in zip(self.values, new, strict=True)]
        )
        return self.values


class WeightAverage:
    """The running mean of the model's weights over the steps from ``start`` on (stochastic
    weight averaging over the low-learning-rate end of the cosine schedule)."""

    def __init__(self, model: Any, start: int):
        self.params = list(model.parameters())
        self.start = start
        self.count = 0
        self.mean = [p.detach().clone() for p in self.params]

    def update(self, step: int) -> None:
        if step < self.start:
            return
        self.count += 1
        with torch.no_grad():
            for m, p in zip(self.mean, self.params, strict=True):
                m.add_(p.detach() - m, alpha=1 / self.count)

    def apply(self) -> None:
        if self.count:
            with torch.no_grad():
                for m, p in zip(self.mean, self.params, strict=True):
                    p.copy_(m)


class Trainer:
    """One training run of ``args`` (the parsed flags): the optimiser and its schedule, the
    training-only heads, the batches, the steps, the checkpoints in ``--out``."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: Any,
        proc: Any,
        bank: Bank,
        rng: np.random.Generator,
        align_heads: list[tuple[int, int]],
    ):
        self.args, self.model, self.proc = args, model, proc
        self.vocab = len(proc.tokenizer)  # also the CTC blank: the id after the last character
        self.ctc_head = nn.Linear(SIZES["audio_hidden"], self.vocab + 1)
        self.word_head = nn.Linear(SIZES["text_hidden"], len(WORD_CLASSES))  # training only, not saved
        self.params = (
            list(model.parameters()) + list(self.ctc_head.parameters()) + list(self.word_head.parameters())
        )
        print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", flush=True)
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
        warm = min(args.warmup, args.steps // 10 + 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, partial(lr_factor, warm=warm, steps=args.steps)
        )
        self.align_heads = align_heads if args.align_weight else None
        self.synthesizer = Synthesizer(
            bank, rng, args.quiet_share, args.speed_perturb, args.long_share, args.sentence_share
        )
        self.batcher = Batcher(proc, self.synthesizer, rng, args.bucket, args.align_eos)

    def run(self) -> None:
        """All the steps, then the final checkpoint (the averaged weights with ``--average-from``)."""
        args = self.args
        t0 = time.time()
        means = RunningMeans()
        average = (
            WeightAverage(self.model, int(args.steps * args.average_from)) if args.average_from < 1 else None
        )
        for step in range(args.steps):
            self.synthesizer.easy = step < args.easy_steps
            losses = self.step(step)
            if average:
                average.update(step)
            ema = means.update(losses)
            if step % 50 == 0 or step == args.steps - 1:
                self._progress(step, ema, time.time() - t0)
            if step and step % args.save_every == 0:
                save(self.model, self.proc, args.out, {"steps": step, "seed": args.seed})
        meta: dict[str, Any] = {"steps": args.steps, "seed": args.seed, "batch": args.batch, "lr": args.lr}
        if average:
            average.apply()
            meta["averaged_from_step"] = average.start
            print(
                f"weights: the mean of steps {average.start}-{args.steps - 1} ({average.count} steps)",
                flush=True,
            )
        save(self.model, self.proc, args.out, meta)
        print(f"saved to {args.out} after {(time.time() - t0) / 60:.1f} min", flush=True)

    def step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on a fresh batch; its losses (LM, CTC, alignment, words)."""
        args = self.args
        b = self.batcher.batch(args.batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            lm, ctc, al, wd = forward_losses(
                self.model,
                self.ctc_head,
                b,
                self.vocab,
                corrupt_at(step, args),
                self.align_heads,
                self.word_head if args.word_weight else None,
                args.lm_groups,
            )
        loss = lm + 0.5 * ctc + args.align_weight * al + args.word_weight * wd
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        return lm, ctc, al, wd

    def _progress(self, step: int, ema: list[float], elapsed: float) -> None:
        lm, ctc, al, wd = ema
        per_step = elapsed / (step + 1)
        eta = per_step * (self.args.steps - step - 1) / 60
        print(
            f"step {step:5d}  lm {lm:.3f}  ctc {ctc:.3f}  align {al:.3f}  words {wd:.3f}  "
            f"lr {self.sched.get_last_lr()[0]:.2e}  {per_step:.2f}s/step  eta {eta:.1f} min",
            flush=True,
        )


def save(model: Any, proc: Any, out: Path, meta: dict[str, Any]) -> None:
    """The checkpoint (model, processor) and ``vocabulary.json``: what the model knows and how
    it was trained."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    proc.save_pretrained(out)
    vocab = {
        "english_words": synth.EN_WORDS,
        "cjk_digits": synth.CJK_DIGITS,
        "languages": ["en", "cmn", "yue"],
        "window_seconds": int(proc.feature_extractor.chunk_length),
        "mel_hop_samples": int(proc.feature_extractor.hop_length),
        "utterance_seconds": [1, 15],
        "levels_dbfs": [-50, -20],
        "training": meta,
    }
    (out / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
    model.train()


def evaluate(
    path: Path, threads: int, seeds: tuple[int, ...] = (2024,), by_voice: bool = False
) -> dict[str, float]:
    """Print the held-out table for ``path``: the CI test's set (``synth.demo_heldout_set``,
    seed 2024), or the sets of ``seeds`` pooled; with ``by_voice`` also the CER of each
    held-out voice (base and variant), worst first."""
    import jiwer  # the eval extra: only the held-out table needs it

    from glmasr_live.asr.engine import AsrEngine, EngineSettings

    engine = AsrEngine(EngineSettings(model=str(path), device="cpu", warmup=False, threads=threads))
    voices: list[synth.Voice | None] = []
    items = [item for seed in seeds for item in synth.demo_heldout_set(seed, voices)]
    results = []
    for i in range(0, len(items), 8):
        chunk = items[i : i + 8]
        out = engine.transcribe([a for _, a, _ in chunk])
        results += [(k, r, t.text) for (k, _, r), t in zip(chunk, out, strict=True)]
    table = {}
    for kind in synth.HELDOUT_KINDS:
        pairs = [(r, h) for k, r, h in results if k == kind]
        if kind == "empty":
            table[kind] = sum(1 for _, h in pairs if not h.strip()) / len(pairs)
        else:
            table[kind] = float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))
    pairs = [(r, h) for k, r, h in results if k != "empty"]
    table["overall"] = float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))
    name = "held-out CER" + (f" (seeds {', '.join(map(str, seeds))})" if seeds != (2024,) else "")
    print(f"{name}: " + "  ".join(f"{k} {v:.3f}" for k, v in table.items()), flush=True)
    if by_voice:
        _print_by_voice(results, voices)
    return table


def _print_by_voice(results: list[tuple[str, str, str]], voices: list[synth.Voice | None]) -> None:
    """The CER of each held-out voice (``results``: kind, reference, hypothesis), worst first."""
    import jiwer

    per: dict[str, list[tuple[str, str]]] = {}
    for (_, r, h), v in zip(results, voices, strict=True):
        if v is not None:
            per.setdefault(f"{v.lang}+{v.variant}" if v.variant else v.lang, []).append((r, h))
    rates = {k: float(jiwer.cer([r for r, _ in p], [h for _, h in p])) for k, p in per.items()}
    for key in sorted(rates, key=lambda k: -rates[k]):
        chars = sum(len(r) for r, _ in per[key])
        print(f"  {key:28s} {rates[key]:.3f}  ({len(per[key])} utterances, {chars} characters)")
