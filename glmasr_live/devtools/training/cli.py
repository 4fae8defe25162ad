"""Train the bundled demo model: a tiny GLM-ASR on synthetic espeak-ng speech (not run by CI).

    python scripts/train_demo_model.py --out assets/demo-model            # one run, about 54 min on 2 CPU cores
    python scripts/train_demo_model.py --out /tmp/dm --steps 200 --quick   # smoke test
    python scripts/train_demo_model.py --evaluate assets/demo-model --eval-seeds 2024,2025,2026

The model is the real ``GlmAsrForConditionalGeneration`` at reduced size with a character
tokenizer whose special tokens and chat template reproduce the real prompt. Training feeds it
exactly what the streaming decoder feeds it: each utterance cut into windows that are encoded
independently (at the processor's fixed window length, or at random pauses), padded to the
window length, or only to the longest window of the batch or (``--bucket``) to a bucket of
their own length (``--encoder-padding none``).

What makes one hour enough: the synthesiser renders words one at a time, so it knows which
samples every word occupies, and training uses that truth twice (both training-only, nothing
of it is saved): two LM attention heads are guided to the audio tokens of the word being
written (``--align-weight``; the end-of-text query to the audio after the last word,
``--align-eos``), and a word classifier on the audio tokens teaches the encoder and projector to
say which word they hold (``--word-weight``). Without them the character LM learns the language
prior first and ignores the audio for thousands of steps; so most clips are words rendered one
at a time (``--sentence-share``: the rest are sentences rendered in one piece). Also baked in: a
CTC head on the encoder output; 20 % of the teacher-forced characters replaced by random ones,
annealed to 5 % (``--corrupt-end``); bfloat16 autocast; the prompt masked out of the loss;
silence and noise alone taught to give an empty transcript. And a step costs less: the encoder's
attention runs in float32 (the CPU flash kernel is faster so at these head sizes), the LM runs on
groups of the batch's rows sorted by length (``--lm-groups``), and the noise is coloured at a
fast FFT length. ``--hop`` sets the mel hop (the real model's is 160 samples, 10 ms): at 240
samples a 6 s window is 400 frames instead of 600 and 50 audio tokens instead of 75, so a step
costs about a third less; the product reads the hop from the processor, like the window length.
Seeded: the same arguments give the same checkpoint on the same machine and library versions.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glmasr_live.asr.tiny import build_char_tokenizer, build_processor
from glmasr_live.devtools.training.loop import CHUNK_S, SIZES, Trainer, build_model, evaluate
from glmasr_live.devtools.training.voices import Bank, load_bank, render_bank, save_bank


def share(value: str) -> float:
    """A share of the data or of the steps: a number from 0 to 1 (``--corrupt``, ``--long-share`` …)."""
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return x


def seed_list(value: str) -> tuple[int, ...]:
    """``--eval-seeds``: comma-separated integers."""
    try:
        seeds = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEED[,SEED...], got {value!r}") from None
    return seeds


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Every flag, in the order ``--help`` lists them (the defaults are the shipped recipe);
    ``prog``: the command in the usage line (default: the script's name)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for add in (_run_flags, _voice_flags, _loss_flags, _data_flags, _model_flags, _eval_flags):
        add(ap)
    return ap


def _run_flags(ap: argparse.ArgumentParser) -> None:
    """The run: where to, how long, the optimiser, the teacher-forcing corruption, averaging."""
    ap.add_argument("--out", type=Path, default=Path("assets/demo-model"))
    ap.add_argument("--steps", type=int, default=3900)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2.5e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small voice bank (smoke test)")
    ap.add_argument("--corrupt", type=share, default=0.2, help="share of teacher-forced characters replaced")
    ap.add_argument(
        "--corrupt-end",
        type=share,
        default=0.05,
        help="share of teacher-forced characters replaced at the last step, linear from --corrupt",
    )
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument(
        "--average-from",
        type=share,
        default=1.0,
        help="save the mean of the weights from this share of the steps on (1: the last step's)",
    )
    ap.add_argument("--save-every", type=int, default=300, help="steps between intermediate checkpoints")


def _voice_flags(ap: argparse.ArgumentParser) -> None:
    """The voice bank's speakers and the utterances' levels."""
    ap.add_argument(
        "--more-voices",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="extended voice variants, bigger voice bank",
    )
    ap.add_argument(
        "--custom-voices",
        type=share,
        default=0.6,
        help="share of random custom espeak-ng speakers in the bank",
    )
    ap.add_argument(
        "--whisper-share", type=share, default=0.5, help="share of the custom speakers that whisper"
    )
    ap.add_argument(
        "--wide-voices",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="custom speakers also vary formant strengths, voicing level, consonants and tilt",
    )
    ap.add_argument(
        "--quiet-share", type=share, default=0.4, help="extra share of utterances at -50..-36 dBFS"
    )
    ap.add_argument(
        "--easy-steps",
        type=int,
        default=0,
        help="curriculum: the first N steps use only built-in voiced speakers at -35..-18 dBFS",
    )


def _loss_flags(ap: argparse.ArgumentParser) -> None:
    """The training-only alignment and word losses."""
    ap.add_argument(
        "--align-weight",
        type=float,
        default=1.0,
        help="weight of the guided-attention loss (heads of --align-heads look at the word being written)",
    )
    ap.add_argument(
        "--align-heads", default="1:0,2:0", help="LM layer:head pairs that the alignment loss guides"
    )
    ap.add_argument(
        "--align-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="guide the end-of-text query to the audio after the last word (the trailing silence)",
    )
    ap.add_argument(
        "--word-weight",
        type=float,
        default=3.0,
        help="weight of the training-only word classifier on the audio tokens (word spans are known)",
    )


def _data_flags(ap: argparse.ArgumentParser) -> None:
    """The bank's size, the data mix and the batches' padding."""
    ap.add_argument("--en-voices", type=int, default=0, help="English voices in the bank (0: 160, or 90)")
    ap.add_argument(
        "--cjk-voices", type=int, default=0, help="voices per Chinese language in the bank (0: 24, or 10)"
    )
    ap.add_argument("--sentences", type=int, default=1500, help="whole sentences rendered in the bank")
    ap.add_argument(
        "--speed-perturb",
        type=float,
        default=0.0,
        help="resample each clip by a random factor within 1 +- this (0: off)",
    )
    ap.add_argument(
        "--long-share", type=share, default=0.4, help="share of word clips of 5-14 s (the rest 0.6-5 s)"
    )
    ap.add_argument(
        "--sentence-share",
        type=share,
        default=0.15,
        help="share of speech clips that are whole sentences (no word spans: no alignment or word targets)",
    )
    ap.add_argument(
        "--bucket",
        type=int,
        default=6,
        help='padding "none" batches: pad each window to a multiple of N audio tokens (0: to the longest)',
    )
    ap.add_argument(
        "--bank-cache",
        type=Path,
        default=None,
        help="reuse the rendered voice bank from this file (experiments)",
    )


def _model_flags(ap: argparse.ArgumentParser) -> None:
    """The step's precision and cost, the processor, the starting weights."""
    ap.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast for the forward pass (weights and optimiser stay float32)",
    )
    ap.add_argument(
        "--lm-groups",
        type=int,
        default=2,
        help="run the LM on this many groups of the batch's rows sorted by length (less padding)",
    )
    ap.add_argument(
        "--hop",
        type=int,
        default=240,
        help="mel hop in samples (240: 15 ms; the real model has 160, 10 ms, which makes a step about 50 %% dearer)",
    )
    ap.add_argument(
        "--window",
        type=int,
        default=CHUNK_S,
        help="window (chunk) length in seconds, written to the processor",
    )
    ap.add_argument(
        "--init-from", type=Path, default=None, help="start from a saved checkpoint (to train it further)"
    )
    ap.add_argument(
        "--reinit-lm", action="store_true", help="with --init-from: keep the encoder, fresh projector + LM"
    )


def _eval_flags(ap: argparse.ArgumentParser) -> None:
    """The held-out table."""
    ap.add_argument(
        "--eval-seeds",
        type=seed_list,
        default=(2024,),
        help="held-out sets scored at the end, pooled (2024: the CI test's set)",
    )
    ap.add_argument(
        "--evaluate", type=Path, default=None, metavar="CHECKPOINT", help="only score CHECKPOINT, no training"
    )
    ap.add_argument(
        "--by-voice",
        action="store_true",
        help="the held-out table (or --evaluate) lists the CER of each voice too",
    )


def check_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[int, int]]:
    """Reject flags that cannot train (through ``ap.error``); the ``--align-heads`` pairs."""
    if args.easy_steps < 0 or args.steps < 1:
        ap.error("--steps must be at least 1 and --easy-steps at least 0")
    if min(args.batch, args.save_every, args.threads, args.lm_groups) < 1:
        ap.error("--batch, --save-every, --threads and --lm-groups must be at least 1")
    if args.bucket < 0:
        ap.error("--bucket must be at least 0")
    if not 0.0 <= args.speed_perturb < 0.5:
        ap.error("--speed-perturb must be between 0 and 0.5")
    if min(args.en_voices, args.cjk_voices, args.sentences) < 0:
        ap.error("--en-voices, --cjk-voices and --sentences must be at least 0")
    if args.align_weight < 0 or args.word_weight < 0:
        ap.error("--align-weight and --word-weight must be at least 0")
    try:
        align_heads = [(int(a), int(h)) for a, h in (pair.split(":") for pair in args.align_heads.split(","))]
    except ValueError:
        ap.error(f"--align-heads: expected LAYER:HEAD[,LAYER:HEAD...], got {args.align_heads!r}")
    for layer, head in align_heads:
        if not (0 <= layer < SIZES["text_layers"] and 0 <= head < SIZES["text_heads"]):
            ap.error(f"--align-heads: no head {head} in layer {layer} of the LM")
    return align_heads


def bank_recipe(args: argparse.Namespace) -> tuple[Any, ...]:
    """What the voice bank depends on: ``render_bank``'s arguments after the seed (and the key
    that a ``--bank-cache`` file must match)."""
    n_en = 8 if args.quick else args.en_voices or (160 if args.more_voices else 90)
    n_cjk = 2 if args.quick else args.cjk_voices or (24 if args.more_voices else 10)
    n_sentences = 50 if args.quick else args.sentences
    return (
        args.seed,
        n_en,
        n_cjk,
        n_sentences,
        args.more_voices,
        args.custom_voices,
        args.whisper_share,
        args.wide_voices,
    )


def build_bank(ap: argparse.ArgumentParser, args: argparse.Namespace, rng: np.random.Generator) -> Bank:
    """The voice bank: rendered with ``rng`` (and written to ``--bank-cache`` if given), or read
    from ``--bank-cache``."""
    t0 = time.time()
    recipe = bank_recipe(args)
    if args.bank_cache and args.bank_cache.exists():
        try:
            bank = load_bank(args.bank_cache, recipe, rng)
        except ValueError as e:
            ap.error(str(e))
    else:
        bank = render_bank(rng, *recipe[1:])
        if args.bank_cache:
            save_bank(args.bank_cache, recipe, bank, rng)
    print(f"rendered voice bank in {time.time() - t0:.0f}s", flush=True)
    return bank


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Train the demo model and score it, or (``--evaluate``) only score a checkpoint."""
    ap = build_parser(prog)
    args = ap.parse_args(argv)
    try:
        import jiwer  # noqa: F401  (the held-out table at the end, and --evaluate)
    except ImportError:
        ap.error("jiwer is missing: pip install -e '.[eval]' (or bash scripts/install.sh --test)")
    if args.evaluate:
        if not (args.evaluate / "config.json").exists():
            ap.error(f"--evaluate: no checkpoint in {args.evaluate}")
        evaluate(args.evaluate, args.threads, args.eval_seeds, args.by_voice)
        return
    align_heads = check_args(ap, args)
    tok = build_char_tokenizer()
    try:
        proc = build_processor(tok, chunk_length=args.window, hop_length=args.hop)
    except ValueError as e:
        ap.error(f"--window/--hop: {e}")
    # Seeded: the same flags give the same checkpoint (same machine and library versions).
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    bank = build_bank(ap, args, rng)
    model = build_model(tok, args)
    Trainer(args, model, proc, bank, rng, align_heads).run()
    evaluate(args.out, args.threads, args.eval_seeds, args.by_voice)
