"""Training-only targets from the synthesiser's exact word spans: where the guided LM heads
should look while each word is written, the word under each audio token, and the corrupted
teacher forcing. Nothing of it is saved with the model."""

from __future__ import annotations

import numpy as np
import torch

from glmasr_live.devtools import synth


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
