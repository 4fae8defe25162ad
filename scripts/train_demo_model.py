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
import json
import math
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import nn

from glmasr_live.asr.blocks import audio_token_counts, window_features
from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model, window_token_samples
from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

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


# ---------------------------------------------------------------------------- data


@dataclass
class Clip:
    audio: np.ndarray
    text: str
    spans: list[tuple[int, int]]
    whispered: bool


def _render_job(args: tuple[str, synth.Voice]) -> tuple[str, synth.Voice, np.ndarray]:
    text, voice = args
    return text, voice, synth.render(text, voice, cache=False)


def _voice(
    rng: np.random.Generator,
    lang: str,
    extended: bool,
    custom: float,
    whisper_share: float = 0.3,
    wide: bool = False,
) -> synth.Voice:
    """A built-in training voice or, for a share ``custom``, a random custom espeak-ng speaker
    (vocal tract, pitch, voice quality; ``whisper_share`` of them whispering; ``wide``: also
    formant strengths, voicing level, consonant loudness and spectral tilt)."""
    if custom and rng.random() < custom:
        whisper = bool(rng.random() < whisper_share)
        return synth.random_variant_voice(rng, lang, whisper=whisper, wide=wide)
    return synth.random_voice(rng, lang=lang, extended=extended)


def render_bank(
    rng: np.random.Generator,
    n_en_voices: int,
    n_cjk_voices: int,
    n_sentences: int,
    extended: bool = False,
    custom: float = 0.0,
    whisper_share: float = 0.3,
    wide: bool = False,
):
    """Render every vocabulary word for a set of random training voices, plus whole sentences."""
    voices_en = [_voice(rng, "en", extended, custom, whisper_share, wide) for _ in range(n_en_voices)]
    voices_cjk = [
        _voice(rng, lang, extended, custom, whisper_share, wide)
        for lang in ("cmn", "yue")
        for _ in range(n_cjk_voices)
    ]
    jobs = [(w, v) for v in voices_en for w in synth.EN_WORDS]
    jobs += [(w, v) for v in voices_cjk for w in synth.CJK_DIGITS]
    sentences = []
    for _ in range(n_sentences):
        cjk = rng.random() < 0.2
        v = (
            voices_cjk[int(rng.integers(len(voices_cjk)))]
            if cjk
            else voices_en[int(rng.integers(len(voices_en)))]
        )
        words = synth.random_words(rng, int(rng.integers(2, 12)), cjk)
        sentences.append((words, v))
        # espeak reads a comma as a short pause: natural coarticulated speech with pauses
        jobs.append((", ".join(words) if not cjk else "，".join(words), v))
    # Threads, not processes: each render waits on an espeak-ng child process, and a forked
    # worker would inherit the caller's threads' locks and signal handlers (a pool forked from
    # the test process once hung on exit).
    with ThreadPoolExecutor(2) as pool:
        rendered = list(pool.map(_render_job, jobs))
    table = {(t, v): a for t, v, a in rendered}
    return voices_en, voices_cjk, table, sentences


class Synthesizer:
    """Builds random training utterances from the rendered bank."""

    def __init__(
        self,
        bank,
        rng: np.random.Generator,
        quiet_share: float = 0.0,
        speed_perturb: float = 0.0,
        long_share: float = 0.3,
        sentence_share: float = 0.3,
    ):
        self.voices_en, self.voices_cjk, self.table, self.sentences = bank
        self.rng = rng
        self.quiet_share = quiet_share
        self.speed_perturb = speed_perturb
        """Resample a clip by a random factor within 1 ± this (tempo, pitch and formants move
        together, like a new speaker's vocal tract); 0: off, and no random draw."""
        self.long_share = long_share
        """Share of word clips of 5-14 s (several windows); the rest are 0.6-5 s."""
        self.sentence_share = sentence_share
        """Share of speech clips that are whole sentences rendered in one piece (no word spans)."""
        self.easy = False
        """Curriculum: built-in, voiced speakers at -35…-18 dBFS only (see ``--easy-steps``)."""

        def plain(v: synth.Voice) -> bool:
            return not v.whispered and not v.variant.startswith(synth.CUSTOM_PREFIX)

        self._easy_en = [v for v in self.voices_en if plain(v)] or self.voices_en
        self._easy_cjk = [v for v in self.voices_cjk if plain(v)] or self.voices_cjk
        self._easy_sentences = [x for x in self.sentences if plain(x[1])] or self.sentences

    def _words_clip(self) -> Clip:
        rng = self.rng
        cjk = rng.random() < 0.18
        if self.easy:
            bank = self._easy_cjk if cjk else self._easy_en
        else:
            bank = self.voices_cjk if cjk else self.voices_en
        voice = bank[int(rng.integers(len(bank)))]
        dur = rng.uniform(0.6, 5.0) if rng.random() < 1 - self.long_share else rng.uniform(5.0, 14.0)
        n = max(1, int(dur / (0.35 if cjk else 0.55)))
        words = synth.random_words(rng, n, cjk)
        pieces, spans, pos = [], [], 0
        for i, w in enumerate(words):
            if i:
                g = rng.uniform(0.3, 0.9) if rng.random() < 0.12 else rng.uniform(0.03, 0.22)
                k = int(g * SAMPLE_RATE)
                pieces.append(np.zeros(k, np.float32))
                pos += k
            a = self.table[(w, voice)]
            pieces.append(a)
            spans.append((pos, pos + len(a)))
            pos += len(a)
        return Clip(np.concatenate(pieces), synth.join_words(words, cjk), spans, voice.whispered)

    def _sentence_clip(self) -> Clip:
        sentences = self._easy_sentences if self.easy else self.sentences
        words, voice = sentences[int(self.rng.integers(len(sentences)))]
        text_in = "，".join(words) if voice.is_cjk else ", ".join(words)
        a = self.table[(text_in, voice)]
        return Clip(a.copy(), synth.join_words(words, voice.is_cjk), [(0, len(a))], voice.whispered)

    def sample(self) -> tuple[np.ndarray, str, list[tuple[int, int]]]:
        rng = self.rng
        if rng.random() < 0.08:  # silence or noise alone -> empty transcript
            n = int(rng.uniform(0.5, 10) * SAMPLE_RATE)
            if rng.random() < 0.3:
                return np.zeros(n, np.float32), "", []
            kind = str(rng.choice(["white", "pink", "brown"]))
            return synth.noise(kind, n, rng, fast=True) * 10 ** (rng.uniform(-70, -35) / 20), "", []
        clip = self._sentence_clip() if rng.random() < self.sentence_share else self._words_clip()
        if self.speed_perturb and not self.easy:
            clip = perturb_speed(clip, float(rng.uniform(1 - self.speed_perturb, 1 + self.speed_perturb)))
        lead = int(rng.uniform(0, 1.2) * SAMPLE_RATE) if rng.random() < 0.6 else 0
        trail = int(rng.uniform(0, 1.2) * SAMPLE_RATE) if rng.random() < 0.6 else 0
        audio = np.concatenate([np.zeros(lead, np.float32), clip.audio, np.zeros(trail, np.float32)])
        spans = [(s + lead, e + lead) for s, e in clip.spans]
        quiet = self.quiet_share > 0 and not self.easy and rng.random() < self.quiet_share  # no draw when off
        level = (
            rng.uniform(-35, -18) if self.easy else rng.uniform(-50, -36) if quiet else rng.uniform(-50, -18)
        )
        speech = audio[spans[0][0] : spans[-1][1]]
        audio = synth.set_level(audio, level, active=speech)
        if rng.random() < 0.6:
            kind = str(rng.choice(["white", "pink", "brown"]))
            audio = synth.add_noise(audio, level, rng.uniform(10, 35), kind, rng, fast=True)
        return audio, clip.text, spans


def perturb_speed(clip: Clip, factor: float) -> Clip:
    """``clip`` played ``factor`` times faster (and higher), word spans moved with it."""
    out_rate = int(round(SAMPLE_RATE / factor))
    audio = soxr.resample(clip.audio, SAMPLE_RATE, out_rate).astype(np.float32)
    scale = len(audio) / max(1, len(clip.audio))
    spans = [
        (int(a * scale), min(len(audio), max(int(a * scale) + 1, int(b * scale)))) for a, b in clip.spans
    ]
    return Clip(audio, clip.text, spans, clip.whispered)


def split_points(n: int, spans: list[tuple[int, int]], rng: np.random.Generator, win: int) -> list[int]:
    """Window boundaries: fixed every ``win`` samples (as the processor cuts), or at random pauses."""
    if rng.random() < 0.45 or len(spans) < 2:
        return list(range(win, n, win))
    cuts, last = [], 0
    gaps = [(spans[i][1] + spans[i + 1][0]) // 2 for i in range(len(spans) - 1)]
    for g in gaps:
        if g - last >= win:  # forced cut, the decoder's 30 s (here: window) limit
            cuts.append(last + win)
            last = last + win
        if rng.random() < 0.25 and g - last > SAMPLE_RATE // 2:
            cuts.append(g)
            last = g
    while n - last > win:
        last += win
        cuts.append(last)
    return cuts


# ---------------------------------------------------------------------------- batching


class Batcher:
    def __init__(
        self,
        processor,
        synthesizer: Synthesizer,
        rng: np.random.Generator,
        bucket_units: int = 0,
        align_eos: bool = False,
    ):
        self.align_eos = align_eos
        """Guide the end-of-text query to the audio after the last word too."""
        self.bucket_units = bucket_units
        """Padding "none": windows padded up to a multiple of this many audio tokens; 0 pads
        them all to the longest window of the batch."""
        self.proc = processor
        self.fe = processor.feature_extractor
        self.unit = window_token_samples(
            int(self.fe.chunk_length), int(self.fe.hop_length)
        )  # one audio token
        self.win = int(self.fe.chunk_length) * SAMPLE_RATE
        self.tok = processor.tokenizer
        self.syn = synthesizer
        self.rng = rng
        text = processor.apply_transcription_request(np.zeros(SAMPLE_RATE, np.float32), tokenize=False)[0]
        head, tail = text.split(processor.audio_token)
        self.head = self.tok(head, add_special_tokens=False).input_ids
        self.tail = self.tok(tail, add_special_tokens=False).input_ids
        self.audio_id = processor.audio_token_id
        self.eos = self.tok.convert_tokens_to_ids("<|endoftext|>")
        self.pad = self.tok.pad_token_id

    def batch(self, size: int):
        full_pad = self.rng.random() < 0.5  # else pad only to the batch's longest window
        chunks, per_sample, texts, cut_lists, span_lists = [], [], [], [], []
        for _ in range(size):
            audio, text, spans = self.syn.sample()
            cuts = [0, *split_points(len(audio), spans, self.rng, self.win), len(audio)]
            pairs = [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
            chunks.extend(audio[a:b] for a, b in pairs)
            per_sample.append(len(pairs))
            texts.append(text)
            cut_lists.append(pairs)
            span_lists.append(spans)
        # Padding "full": every window to the processor's window, as offline and by default.
        # Padding "none": the decoder encodes each block at its own length; here windows are
        # grouped by their length rounded up to a bucket, one encoder call per group.
        unit = self.unit  # one audio token: keeps conv + 4-frame merge exact
        longest = max(len(c) for c in chunks)
        bucket = unit * self.bucket_units
        lengths = [
            self.win
            if full_pad
            else min(self.win, -(-len(c) // bucket) * bucket if bucket else -(-longest // unit) * unit)
            for c in chunks
        ]
        groups, ntok = [], [0] * len(chunks)
        for target in sorted(set(lengths)):
            idx = [i for i, n in enumerate(lengths) if n == target]
            feats = window_features(self.fe, [chunks[i] for i in idx], target)
            mask = feats["attention_mask"]
            for i, n in zip(idx, audio_token_counts(mask.sum(-1)), strict=True):
                ntok[i] = n
            groups.append((idx, feats["input_features"], mask))
        seqs, labels, align, word_labels, k = [], [], [], [], 0
        for i, (n_w, text) in enumerate(zip(per_sample, texts, strict=True)):
            counts = ntok[k : k + n_w]
            n_audio = sum(counts)
            k += n_w
            prompt = self.head + [self.audio_id] * n_audio + self.tail
            answer = self.tok(text, add_special_tokens=False).input_ids + [self.eos]
            seqs.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
            align += alignment_targets(
                i,
                text,
                span_lists[i],
                cut_lists[i],
                counts,
                len(self.head),
                len(prompt),
                len(answer),
                eos=self.align_eos,
                token_samples=self.unit,
            )
            word_labels += token_word_labels(
                text, span_lists[i], cut_lists[i], counts, token_samples=self.unit
            )
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad)
        lab = torch.full((len(seqs), width), -100)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            lab[i, : len(s)] = torch.tensor(lb)
            att[i, : len(s)] = 1
        # CTC targets: the transcript's character ids, per sample, over all its windows' frames
        ctc_targets = [torch.tensor(self.tok(t, add_special_tokens=False).input_ids) for t in texts]
        return dict(
            groups=groups,
            input_ids=ids,
            attention_mask=att,
            labels=lab,
            per_sample=per_sample,
            ctc_targets=ctc_targets,
            align=align,
            word_labels=torch.tensor(word_labels, dtype=torch.long),
        )


def transcript_words(text: str) -> tuple[list[str], bool]:
    """The words of a transcript made by ``synth.join_words`` (CJK: one per character), and
    whether it is CJK (no separators between words)."""
    cjk = bool(text) and not text.isascii()
    return (list(text) if cjk else text.split(" ")) if text else [], cjk


def alignment_targets(
    row: int,
    text: str,
    spans: list[tuple[int, int]],
    windows: list[tuple[int, int]],
    counts: list[int],
    audio_start: int,
    answer_start: int,
    answer_len: int,
    *,
    token_samples: int,
    margin: int = 1,
    eos: bool = False,
) -> list[tuple[int, int, int, int]]:
    """Where the LM should look while it writes each word: ``(row, query position, first key,
    last key)`` — the query is the position whose logits predict a character of the word (or the
    separator after it), the keys are the audio tokens of that word's samples (± ``margin``).
    With ``eos`` the query that predicts the end of text looks past the last word: from its last
    audio token to the end of the audio (the trailing silence). ``token_samples``: the samples of
    one audio token (8 mel frames of the processor's hop).

    Only for clips whose words were rendered one at a time (one span per word): the synthesiser
    knows every word's sample span exactly, so the alignment is the truth, not an estimate.
    """
    words, cjk = transcript_words(text)
    if not words or len(words) != len(spans):
        return []
    offsets = np.cumsum([0, *counts])

    def token_at(sample: int) -> int:
        for j, (a, b) in enumerate(windows):
            if sample < b or j == len(windows) - 1:
                local = min(max(0, (sample - a) // token_samples), counts[j] - 1)
                return int(offsets[j]) + max(0, local)
        return 0

    out, c = [], 0
    n_audio = int(offsets[-1])
    for w, (s0, s1) in zip(words, spans, strict=True):
        lo = max(0, token_at(s0) - margin)
        hi = min(n_audio - 1, token_at(max(s0, s1 - 1)) + margin)
        n_chars = len(w) + (0 if cjk else 1)  # the separator after the word looks at it too
        for q in range(c, min(c + n_chars, answer_len - 1)):
            out.append((row, answer_start + q - 1, audio_start + lo, audio_start + hi))
        c += len(w) + (0 if cjk else 1)
    if eos and answer_len >= 2:
        last = token_at(max(spans[-1][0], spans[-1][1] - 1))
        out.append((row, answer_start + answer_len - 2, audio_start + last, audio_start + n_audio - 1))
    return out


# ---------------------------------------------------------------------------- model


def corrupt_text_inputs(ids: torch.Tensor, labels: torch.Tensor, p: float, vocab: int) -> torch.Tensor:
    """Replace a share ``p`` of the teacher-forced transcript characters with random ones.

    With clean teacher forcing a character LM predicts most of a word from its first letters
    and never needs the audio (the loss plateaus at the language prior); corrupted inputs make
    the audio the only reliable evidence. Labels stay clean.
    """
    if p <= 0:
        return ids
    text_pos = labels != -100  # input positions that hold transcript characters (and the eos)
    hit = text_pos & (torch.rand(ids.shape) < p)
    random_chars = torch.randint(8, vocab, ids.shape)  # ids below 8 are the special tokens
    return torch.where(hit, random_chars, ids)


WORD_CLASSES = ["", *synth.EN_WORDS, *synth.CJK_DIGITS]
"""Classes of the training-only word head on the audio tokens: silence, then every word."""


def token_word_labels(
    text: str,
    spans: list[tuple[int, int]],
    windows: list[tuple[int, int]],
    counts: list[int],
    *,
    token_samples: int,
) -> list[int]:
    """The word under each audio token (its centre sample), for the training-only word head:
    the word's class inside a word's span, 0 (silence) more than a token away from any speech,
    -100 (no loss) near a word's edges and inside sentences rendered in one piece.
    ``token_samples``: the samples of one audio token (8 mel frames of the processor's hop)."""
    words, _ = transcript_words(text)
    per_word = len(words) == len(spans)
    out: list[int] = []
    for (a, b), n in zip(windows, counts, strict=True):
        for local in range(n):
            c = min(b - 1, a + local * token_samples + token_samples // 2)
            label = 0
            for k, (s0, s1) in enumerate(spans):
                if s0 <= c < s1:
                    label = WORD_CLASSES.index(words[k]) if per_word else -100
                    break
                if s0 - token_samples <= c < s1 + token_samples:
                    label = -100
            if not per_word and spans and spans[0][0] - token_samples <= c < spans[-1][1] + token_samples:
                label = -100
            out.append(label)
    return out


def length_groups(lengths: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """The batch's row indices sorted by length, in ``groups`` groups of (nearly) equal size."""
    order = torch.argsort(lengths, stable=True)
    return [g for g in torch.tensor_split(order, max(1, min(groups, len(order)))) if len(g)]


def attention_mass(
    attentions,
    align: list[tuple[int, int, int, int]],
    heads: list[tuple[int, int]],
    rows: torch.Tensor,
    n_rows: int,
) -> torch.Tensor:
    """The attention mass that each guided head puts on the word being written, for the
    alignment targets of the batch rows ``rows`` (of ``n_rows``; ``attentions`` are those rows'
    in that order): shape (heads, targets)."""
    t = torch.tensor(align, dtype=torch.long).reshape(-1, 4)
    local = torch.full((n_rows,), -1, dtype=torch.long)
    local[rows] = torch.arange(len(rows))
    t = t[local[t[:, 0]] >= 0]
    row, queries, lo, hi = t.unbind(1)
    keys = torch.arange(attentions[0].shape[-1])
    inside = (keys[None, :] >= lo[:, None]) & (keys[None, :] <= hi[:, None])
    out = [(attentions[layer][local[row], head, queries].float() * inside).sum(-1) for layer, head in heads]
    return torch.stack(out) if out else torch.zeros(0, len(t))


def alignment_loss(masses: list[torch.Tensor]) -> torch.Tensor:
    """-log of the attention mass on the word being written: mean over targets, then heads."""
    mass = torch.cat(masses, dim=1) if masses else torch.zeros(0, 0)
    if mass.numel() == 0:
        return torch.zeros(())
    return -torch.log(mass.clamp_min(1e-6)).mean(dim=1).mean()


def forward_losses(
    model,
    ctc_head: nn.Linear,
    b: dict,
    ctc_blank: int,
    corrupt: float = 0.0,
    align_heads: list[tuple[int, int]] | None = None,
    word_head: nn.Linear | None = None,
    lm_groups: int = 1,
):
    core = model.model
    n_windows = sum(len(idx) for idx, _, _ in b["groups"])
    enc_frames: list = [None] * n_windows  # valid encoder frames (50 per second) of each window
    window_tokens: list = [None] * n_windows  # valid audio tokens (12.5 per second) of each window
    for idx, features, mask in b["groups"]:
        enc = core.audio_tower(features).last_hidden_state  # (W, T/2, H)
        audio = core.multi_modal_projector(
            enc.reshape(enc.shape[0], -1, model.config.audio_config.intermediate_size)
        )
        enc_len = (mask.sum(-1) - 1) // 2 + 1
        post = (enc_len - 4) // 4 + 1
        for j, i in enumerate(idx):
            enc_frames[i] = enc[j, : int(enc_len[j])]
            window_tokens[i] = audio[j, : int(post[j])]
    audio_tokens = torch.cat(window_tokens)
    ids = corrupt_text_inputs(b["input_ids"], b["labels"], corrupt, ctc_blank)
    emb = core.language_model.get_input_embeddings()(ids)
    place = (b["input_ids"] == model.config.audio_token_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(place, audio_tokens.to(emb.dtype))
    # The LM runs on length groups (rows sorted by length, each group cut to its longest row):
    # the same losses as one padded batch (right padding never reaches a causal query), less work.
    lengths = b["attention_mask"].sum(-1)
    labels = b["labels"]
    ce_sum, masses = torch.zeros(()), []
    for rows in length_groups(lengths, lm_groups):
        width = int(lengths[rows].max())
        lm_out = core.language_model(
            inputs_embeds=emb[rows, :width],
            attention_mask=b["attention_mask"][rows, :width],
            output_attentions=bool(align_heads),
        )
        logits = model.lm_head(lm_out.last_hidden_state)
        ce_sum = ce_sum + nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[rows, 1:width].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        if align_heads:
            masses.append(attention_mass(lm_out.attentions, b["align"], align_heads, rows, len(lengths)))
    lm_loss = ce_sum / (labels[:, 1:] != -100).sum().clamp_min(1)
    align = alignment_loss(masses) if align_heads else torch.zeros(())
    # CTC over each sample's concatenated valid encoder frames
    seqs, lens, k = [], [], 0
    for n_w in b["per_sample"]:
        seq = ctc_head(torch.cat(enc_frames[k : k + n_w])).log_softmax(-1)
        k += n_w
        seqs.append(seq)
        lens.append(seq.shape[0])
    padded = nn.utils.rnn.pad_sequence(seqs)  # (T, B, V)
    tg = b["ctc_targets"]
    ctc = nn.functional.ctc_loss(
        padded,
        torch.cat(tg) if tg else torch.zeros(0, dtype=torch.long),
        torch.tensor(lens),
        torch.tensor([len(t) for t in tg]),
        blank=ctc_blank,
        zero_infinity=True,
    )
    words = torch.zeros(())
    assert b["word_labels"].shape[0] == audio_tokens.shape[0], "one word label per audio token"
    if word_head is not None and bool((b["word_labels"] != -100).any()):
        words = nn.functional.cross_entropy(word_head(audio_tokens), b["word_labels"], ignore_index=-100)
    return lm_loss, ctc, align, words


def sdpa_float32(module, query, key, value, attention_mask=None, **kwargs):
    """Scaled dot-product attention in float32 under bfloat16 autocast (registered for the
    encoder as ``sdpa_fp32``): the CPU flash kernel runs faster in float32 at these head sizes."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask=attention_mask, **kwargs
        )
    return out.to(query.dtype), weights


def use_float32_encoder_attention(model) -> None:
    """Train with the encoder's attention in float32 (``sdpa_float32``); the saved config keeps
    the default implementation, so the checkpoint loads as any other."""
    from transformers import AttentionInterface

    AttentionInterface.register("sdpa_fp32", sdpa_float32)
    model.model.audio_tower.set_attn_implementation("sdpa_fp32")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = ap.parse_args()
    try:
        import jiwer  # noqa: F401  (the held-out table at the end, and --evaluate)
    except ImportError:
        ap.error("jiwer is missing: pip install -e '.[eval]' (or bash scripts/install.sh --test)")
    if args.evaluate:
        if not (args.evaluate / "config.json").exists():
            ap.error(f"--evaluate: no checkpoint in {args.evaluate}")
        evaluate(args.evaluate, args.threads, args.eval_seeds, args.by_voice)
        return
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

    tok = build_char_tokenizer()
    try:
        proc = build_processor(tok, chunk_length=args.window, hop_length=args.hop)
    except ValueError as e:
        ap.error(f"--window/--hop: {e}")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    n_en = 8 if args.quick else args.en_voices or (160 if args.more_voices else 90)
    n_cjk = 2 if args.quick else args.cjk_voices or (24 if args.more_voices else 10)
    n_sentences = 50 if args.quick else args.sentences
    recipe = (
        args.seed,
        n_en,
        n_cjk,
        n_sentences,
        args.more_voices,
        args.custom_voices,
        args.whisper_share,
        args.wide_voices,
    )
    if args.bank_cache and args.bank_cache.exists():
        try:
            with args.bank_cache.open("rb") as f:
                cached, bank, state = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            ap.error(f"--bank-cache {args.bank_cache}: not a voice bank written by this script ({e})")
        if cached != recipe:
            ap.error(f"--bank-cache {args.bank_cache} holds another bank {cached}, not {recipe}")
        rng.bit_generator.state = state  # the same random numbers as after rendering it
    else:
        bank = render_bank(rng, *recipe[1:])
        if args.bank_cache:
            with args.bank_cache.open("wb") as f:
                pickle.dump((recipe, bank, rng.bit_generator.state), f)
    print(f"rendered voice bank in {time.time() - t0:.0f}s", flush=True)

    model = build_tiny_model(tok, seed=args.seed, **SIZES)
    if args.init_from:
        from transformers import GlmAsrForConditionalGeneration

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
    ctc_head = nn.Linear(SIZES["audio_hidden"], len(tok) + 1)
    word_head = nn.Linear(SIZES["text_hidden"], len(WORD_CLASSES))  # training only, not saved
    params = list(model.parameters()) + list(ctc_head.parameters()) + list(word_head.parameters())
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = min(args.warmup, args.steps // 10 + 1)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = (step - warm) / max(1, args.steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)

    def corrupt_at(step: int) -> float:
        """Corrupted share of teacher forcing: from --corrupt at the start to --corrupt-end."""
        return args.corrupt + (args.corrupt_end - args.corrupt) * step / max(1, args.steps - 1)

    synthesizer = Synthesizer(
        bank, rng, args.quiet_share, args.speed_perturb, args.long_share, args.sentence_share
    )
    batcher = Batcher(proc, synthesizer, rng, args.bucket, args.align_eos)
    t0 = time.time()
    ema_lm = ema_ctc = ema_al = ema_wd = None
    average = WeightAverage(model, int(args.steps * args.average_from)) if args.average_from < 1 else None
    for step in range(args.steps):
        synthesizer.easy = step < args.easy_steps
        b = batcher.batch(args.batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            lm, ctc, al, wd = forward_losses(
                model,
                ctc_head,
                b,
                len(tok),
                corrupt_at(step),
                align_heads if args.align_weight else None,
                word_head if args.word_weight else None,
                args.lm_groups,
            )
        loss = lm + 0.5 * ctc + args.align_weight * al + args.word_weight * wd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if average:
            average.update(step)
        ema_lm = lm.item() if ema_lm is None else 0.98 * ema_lm + 0.02 * lm.item()
        ema_ctc = ctc.item() if ema_ctc is None else 0.98 * ema_ctc + 0.02 * ctc.item()
        ema_al = al.item() if ema_al is None else 0.98 * ema_al + 0.02 * al.item()
        ema_wd = wd.item() if ema_wd is None else 0.98 * ema_wd + 0.02 * wd.item()
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t0
            print(
                f"step {step:5d}  lm {ema_lm:.3f}  ctc {ema_ctc:.3f}  align {ema_al:.3f}  words {ema_wd:.3f}  lr {sched.get_last_lr()[0]:.2e}  "
                f"{el / (step + 1):.2f}s/step  eta {el / (step + 1) * (args.steps - step - 1) / 60:.1f} min",
                flush=True,
            )
        if step and step % args.save_every == 0:
            save(model, proc, args.out, {"steps": step, "seed": args.seed})
    meta = {"steps": args.steps, "seed": args.seed, "batch": args.batch, "lr": args.lr}
    if average:
        average.apply()
        meta["averaged_from_step"] = average.start
        print(
            f"weights: the mean of steps {average.start}-{args.steps - 1} ({average.count} steps)", flush=True
        )
    save(model, proc, args.out, meta)
    print(f"saved to {args.out} after {(time.time() - t0) / 60:.1f} min", flush=True)
    evaluate(args.out, args.threads, args.eval_seeds, args.by_voice)


def evaluate(
    path: Path, threads: int, seeds: tuple[int, ...] = (2024,), by_voice: bool = False
) -> dict[str, float]:
    """Print the held-out table for ``path``: the CI test's set (``synth.demo_heldout_set``,
    seed 2024), or the sets of ``seeds`` pooled; with ``by_voice`` also the CER of each
    held-out voice (base and variant), worst first."""
    import jiwer

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
        per: dict[str, list[tuple[str, str]]] = {}
        for (_, r, h), v in zip(results, voices, strict=True):
            if v is not None:
                per.setdefault(f"{v.lang}+{v.variant}" if v.variant else v.lang, []).append((r, h))
        rates = {k: float(jiwer.cer([r for r, _ in p], [h for _, h in p])) for k, p in per.items()}
        for key in sorted(rates, key=lambda k: -rates[k]):
            chars = sum(len(r) for r, _ in per[key])
            print(f"  {key:28s} {rates[key]:.3f}  ({len(per[key])} utterances, {chars} characters)")
    return table


class WeightAverage:
    """The running mean of the model's weights over the steps from ``start`` on (stochastic
    weight averaging over the low-learning-rate end of the cosine schedule)."""

    def __init__(self, model, start: int):
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


def save(model, proc, out: Path, meta: dict) -> None:
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


if __name__ == "__main__":
    main()
