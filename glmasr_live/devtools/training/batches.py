"""Training batches: each utterance cut into windows the way the streaming decoder cuts it, the
windows encoded in padding groups, and the prompt + transcript rows with their targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from glmasr_live.asr.blocks import audio_token_counts, window_features
from glmasr_live.asr.tiny import window_token_samples
from glmasr_live.devtools.training.targets import alignment_targets, token_word_labels
from glmasr_live.devtools.training.voices import Synthesizer
from glmasr_live.events import SAMPLE_RATE


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


@dataclass
class _Utterance:
    audio: np.ndarray
    text: str
    spans: list[tuple[int, int]]
    windows: list[tuple[int, int]]
    """``(first sample, end sample)`` of each window, in order."""


class Batcher:
    def __init__(
        self,
        processor: Any,
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

    def batch(self, size: int) -> dict[str, Any]:
        full_pad = self.rng.random() < 0.5  # else pad only to the batch's longest window
        utterances = [self._draw() for _ in range(size)]
        chunks = [u.audio[a:b] for u in utterances for a, b in u.windows]
        groups, ntok = self._encode(chunks, full_pad)
        seqs, labels, align, word_labels = self._rows(utterances, ntok)
        ids, lab, att = self._pad(seqs, labels)
        # CTC targets: the transcript's character ids, per sample, over all its windows' frames
        ctc_targets = [torch.tensor(self.tok(u.text, add_special_tokens=False).input_ids) for u in utterances]
        return dict(
            groups=groups,
            input_ids=ids,
            attention_mask=att,
            labels=lab,
            per_sample=[len(u.windows) for u in utterances],
            ctc_targets=ctc_targets,
            align=align,
            word_labels=torch.tensor(word_labels, dtype=torch.long),
        )

    def _draw(self) -> _Utterance:
        """A random utterance, cut into windows."""
        audio, text, spans = self.syn.sample()
        cuts = [0, *split_points(len(audio), spans, self.rng, self.win), len(audio)]
        pairs = [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
        return _Utterance(audio, text, spans, pairs)

    def _encode(self, chunks: list[np.ndarray], full_pad: bool) -> tuple[list[tuple], list[int]]:
        """The windows' features in padding groups ``(window indices, features, mask)``, and
        each window's count of audio tokens.

        Padding "full": every window to the processor's window, as offline and by default.
        Padding "none": the decoder encodes each block at its own length; here windows are
        grouped by their length rounded up to a bucket, one encoder call per group.
        """
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
        return groups, ntok

    def _rows(
        self, utterances: list[_Utterance], ntok: list[int]
    ) -> tuple[list[list[int]], list[list[int]], list[tuple[int, int, int, int]], list[int]]:
        """Each utterance's row (prompt with one placeholder per audio token, then the
        transcript and end of text), its labels (the prompt masked out), and the batch's
        alignment targets and word labels."""
        seqs, labels, align, word_labels, k = [], [], [], [], 0
        for i, u in enumerate(utterances):
            counts = ntok[k : k + len(u.windows)]
            k += len(u.windows)
            prompt = self.head + [self.audio_id] * sum(counts) + self.tail
            answer = self.tok(u.text, add_special_tokens=False).input_ids + [self.eos]
            seqs.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
            align += alignment_targets(
                i,
                u.text,
                u.spans,
                u.windows,
                counts,
                len(self.head),
                len(prompt),
                len(answer),
                eos=self.align_eos,
                token_samples=self.unit,
            )
            word_labels += token_word_labels(u.text, u.spans, u.windows, counts, token_samples=self.unit)
        return seqs, labels, align, word_labels

    def _pad(
        self, seqs: list[list[int]], labels: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rows right-padded to the longest: input ids, labels, attention mask."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad)
        lab = torch.full((len(seqs), width), -100)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            lab[i, : len(s)] = torch.tensor(lb)
            att[i, : len(s)] = 1
        return ids, lab, att
