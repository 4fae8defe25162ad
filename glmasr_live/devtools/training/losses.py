"""One training step's forward pass and its losses: the LM's cross-entropy on the transcript,
the guided-attention alignment loss, CTC on the encoder output and the word classifier on the
audio tokens; and the encoder's float32 attention under bfloat16 autocast."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from glmasr_live.devtools.training.targets import corrupt_text_inputs


def length_groups(lengths: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """The batch's row indices sorted by length, in ``groups`` groups of (nearly) equal size."""
    order = torch.argsort(lengths, stable=True)
    return [g for g in torch.tensor_split(order, max(1, min(groups, len(order)))) if len(g)]


def attention_mass(
    attentions: Any,
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
    model: Any,
    ctc_head: nn.Linear,
    b: dict[str, Any],
    ctc_blank: int,
    corrupt: float = 0.0,
    align_heads: list[tuple[int, int]] | None = None,
    word_head: nn.Linear | None = None,
    lm_groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The losses of batch ``b`` (``Batcher.batch``): LM, CTC, alignment and words (the last
    two zero without ``align_heads`` or ``word_head``)."""
    core = model.model
    enc_frames, window_tokens = _encode_windows(model, b["groups"])
    audio_tokens = torch.cat(window_tokens)
    ids = corrupt_text_inputs(b["input_ids"], b["labels"], corrupt, ctc_blank)
    emb = core.language_model.get_input_embeddings()(ids)
    place = (b["input_ids"] == model.config.audio_token_id).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(place, audio_tokens.to(emb.dtype))
    lm_loss, align = _lm_losses(model, emb, b, align_heads, lm_groups)
    ctc = _ctc_loss(ctc_head, enc_frames, b["per_sample"], b["ctc_targets"], ctc_blank)
    words = torch.zeros(())
    assert b["word_labels"].shape[0] == audio_tokens.shape[0], "one word label per audio token"
    if word_head is not None and bool((b["word_labels"] != -100).any()):
        words = nn.functional.cross_entropy(word_head(audio_tokens), b["word_labels"], ignore_index=-100)
    return lm_loss, ctc, align, words


def _encode_windows(model: Any, groups: list[tuple]) -> tuple[list[Any], list[Any]]:
    """Each window's valid encoder frames (50 per second, for CTC) and valid audio tokens
    (12.5 per second, for the LM), in window order; one encoder call per padding group."""
    core = model.model
    n_windows = sum(len(idx) for idx, _, _ in groups)
    enc_frames: list[Any] = [None] * n_windows
    window_tokens: list[Any] = [None] * n_windows
    for idx, features, mask in groups:
        enc = core.audio_tower(features).last_hidden_state  # (W, T/2, H)
        audio = core.multi_modal_projector(
            enc.reshape(enc.shape[0], -1, model.config.audio_config.intermediate_size)
        )
        enc_len = (mask.sum(-1) - 1) // 2 + 1
        post = (enc_len - 4) // 4 + 1
        for j, i in enumerate(idx):
            enc_frames[i] = enc[j, : int(enc_len[j])]
            window_tokens[i] = audio[j, : int(post[j])]
    return enc_frames, window_tokens


def _lm_losses(
    model: Any,
    emb: torch.Tensor,
    b: dict[str, Any],
    align_heads: list[tuple[int, int]] | None,
    lm_groups: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM's cross-entropy per transcript token, and the alignment loss.

    The LM runs on length groups (rows sorted by length, each group cut to its longest row):
    the same losses as one padded batch (right padding never reaches a causal query), less work.
    """
    core = model.model
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
    return lm_loss, align


def _ctc_loss(
    ctc_head: nn.Linear,
    enc_frames: list[Any],
    per_sample: list[int],
    targets: list[torch.Tensor],
    blank: int,
) -> torch.Tensor:
    """CTC over each sample's concatenated valid encoder frames."""
    seqs, lens, k = [], [], 0
    for n_w in per_sample:
        seq = ctc_head(torch.cat(enc_frames[k : k + n_w])).log_softmax(-1)
        k += n_w
        seqs.append(seq)
        lens.append(seq.shape[0])
    padded = nn.utils.rnn.pad_sequence(seqs)  # (T, B, V)
    return nn.functional.ctc_loss(
        padded,
        torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        torch.tensor(lens),
        torch.tensor([len(t) for t in targets]),
        blank=blank,
        zero_infinity=True,
    )


def sdpa_float32(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """Scaled dot-product attention in float32 under bfloat16 autocast (registered for the
    encoder as ``sdpa_fp32``): the CPU flash kernel runs faster in float32 at these head sizes."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask=attention_mask, **kwargs
        )
    return out.to(query.dtype), weights


def use_float32_encoder_attention(model: Any) -> None:
    """Train with the encoder's attention in float32 (``sdpa_float32``); the saved config keeps
    the default implementation, so the checkpoint loads as any other."""
    from transformers import AttentionInterface

    AttentionInterface.register("sdpa_fp32", sdpa_float32)
    model.model.audio_tower.set_attn_implementation("sdpa_fp32")
