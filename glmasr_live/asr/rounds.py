"""Batched LM passes over many streams' cached prefixes (the layout is in ``asr/kv.py``).

``lm_round`` prefills each row's new tokens (open-block audio tokens, instruction, forced
committed text) on top of that row's own prefix and decodes greedily, all rows in one batch,
until every row has stopped. ``extend_prefix`` is the one-row pass that grows a prefix (a block
closes) or asks a question of it (the settled check) without keeping the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from glmasr_live.asr.kv import Slot, SlotStore
from glmasr_live.asr.prompt import run_lm


@dataclass
class LmRow:
    """One stream's share of a round.

    ``embeds`` (n, hidden) are its new tokens; ``budget`` caps what it generates; ``forced``
    (its committed ids) feeds the repetition guard; ``scripted`` (benchmarks with random
    weights) is the token sequence chosen instead of the argmax, at the same compute.
    """

    slot: Slot
    embeds: torch.Tensor
    budget: int
    forced: Sequence[int] = ()
    scripted: Sequence[int] | None = None


@dataclass
class RowAnswer:
    """What a round gave one row: the generated ids, and the log-probability of every answer
    token under the round's context (the forced ones, the generated ones and the token that
    ended the answer, end-of-text included), the model's own measure of how sure it is."""

    ids: list[int]
    logprobs: list[float]

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


def slot_store(engine: Any) -> SlotStore:
    """The one store of an engine's model (created on first use)."""
    store = getattr(engine, "_slot_store", None)
    if store is None:
        cfg = engine.model.config.text_config
        heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        store = SlotStore(int(cfg.num_hidden_layers), heads, head_dim, engine.dtype, engine.device)
        engine._slot_store = store
    return store


def _lm(engine: Any) -> Any:
    return engine.model.model.language_model


@torch.inference_mode()
def extend_prefix(
    engine: Any, store: SlotStore, slot: Slot, embeds: torch.Tensor, keep: bool
) -> torch.Tensor:
    """Run ``embeds`` (n, hidden) after ``slot``'s prefix; hidden states (n, hidden).

    ``keep`` makes them part of the prefix (a closed block); otherwise they are scratch."""
    n = int(embeds.shape[0])
    p = slot.length
    store.ensure_columns(p + n)
    cache = store.view(slot.index, slot.index + 1, p)
    positions = torch.arange(p, p + n, device=engine.device)[None]
    mask = _causal(torch.ones(1, p + n, dtype=torch.bool, device=engine.device), p, n, engine.dtype)
    hidden = run_lm(_lm(engine), embeds[None], cache, mask=mask, positions=positions)
    if keep:
        slot.length = p + n
    return hidden[0]


def _causal(valid: torch.Tensor, first: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4-D mask (rows, 1, n, first + n): key c is seen by the query at column
    ``first + i`` when ``valid[row, c]`` and c <= first + i."""
    cols = torch.arange(first + n, device=valid.device)
    q = torch.arange(first, first + n, device=valid.device)
    seen = valid[:, None, :] & (cols[None, :] <= q[:, None])[None]
    out = torch.zeros(seen.shape, dtype=dtype, device=valid.device)
    out.masked_fill_(~seen, torch.finfo(dtype).min)
    return out[:, None]


@torch.inference_mode()
def lm_round(engine: Any, store: SlotStore, rows: list[LmRow]) -> list[RowAnswer]:
    """Every row's answer, from one batched prefill and one batched greedy loop."""
    if not rows:
        return []
    lo = min(r.slot.index for r in rows)
    hi = max(r.slot.index for r in rows) + 1
    by_index: dict[int, LmRow] = {r.slot.index: r for r in rows}
    slots = store.slots[lo:hi]
    write = max(s.length for s in slots)  # common column: the longest prefix in the range
    n_max = max(int(r.embeds.shape[0]) for r in rows)
    steps = max(r.budget for r in rows)
    store.ensure_columns(write + n_max + steps + 1)
    dev, dtype = engine.device, engine.dtype
    b, hidden_size = hi - lo, int(rows[0].embeds.shape[1])
    total = write + n_max + steps + 1
    valid = torch.zeros(b, total, dtype=torch.bool, device=dev)
    valid[:, write + n_max :] = True  # each row's own generated tokens
    embeds = torch.zeros(b, n_max, hidden_size, dtype=rows[0].embeds.dtype, device=dev)
    positions = torch.zeros(b, n_max, dtype=torch.long, device=dev)
    lengths = []
    for i, s in enumerate(slots):
        valid[i, : s.length] = True
        row = by_index.get(s.index)
        n = int(row.embeds.shape[0]) if row is not None else 0
        lengths.append(n)
        positions[i] = s.length  # left padding: its queries see the prefix only
        if n:
            assert row is not None
            embeds[i, n_max - n :] = row.embeds
            valid[i, write + n_max - n : write + n_max] = True
            positions[i, n_max - n :] = torch.arange(s.length, s.length + n, device=dev)
    cache = store.view(lo, hi, write)
    lm = _lm(engine)
    mask = _causal(valid[:, : write + n_max], write, n_max, dtype)
    states = run_lm(lm, embeds, cache, mask=mask, positions=positions)
    forced = _forced_logprobs(engine, states, [by_index.get(s.index) for s in slots])
    hidden = states[:, -1]
    next_pos = torch.tensor([s.length + n for s, n in zip(slots, lengths, strict=True)], device=dev)
    outs = _greedy(
        engine, lm, cache, hidden, valid, write + n_max, next_pos, [by_index.get(s.index) for s in slots]
    )
    return [
        RowAnswer(outs[r.slot.index - lo][0], forced[r.slot.index - lo] + outs[r.slot.index - lo][1])
        for r in rows
    ]


def _choose(
    engine: Any, hidden: torch.Tensor, rows: list[LmRow | None], outs: dict[int, list[int]], live: set[int]
) -> tuple[list[int], list[float]]:
    """Each row's next token (the argmax, or the script's) and its log-probability, read back
    in one transfer."""
    logp = torch.log_softmax(engine.model.lm_head(hidden).float(), -1)
    chosen = logp.argmax(-1)
    scripted = [
        (i, int(r.scripted[len(outs[i])]))
        for i in live
        if (r := rows[i]) is not None and r.scripted is not None and len(outs[i]) < len(r.scripted)
    ]
    if scripted:
        at = torch.tensor([i for i, _ in scripted], device=chosen.device)
        chosen[at] = torch.tensor([t for _, t in scripted], device=chosen.device)
    picked = logp.gather(-1, chosen[:, None])[:, 0]
    return chosen.tolist(), picked.tolist()


def _forced_logprobs(engine: Any, states: torch.Tensor, rows: list[LmRow | None]) -> list[list[float]]:
    """Each row's log-probabilities of its forced tokens: the state before each forced token
    (its prompt's last token, then each forced one) predicts it."""
    k = max((len(r.forced) for r in rows if r is not None), default=0)
    out: list[list[float]] = [[] for _ in rows]
    if k == 0:
        return out
    logp = torch.log_softmax(engine.model.lm_head(states[:, -k - 1 : -1]).float(), -1)
    for i, r in enumerate(rows):
        if r is not None and r.forced:
            n = len(r.forced)
            ids = torch.tensor(list(r.forced), device=logp.device)
            out[i] = logp[i, k - n :].gather(-1, ids[:, None])[:, 0].tolist()
    return out


def _greedy(
    engine: Any,
    lm: Any,
    cache: Any,
    hidden: torch.Tensor,
    valid: torch.Tensor,
    column: int,
    next_pos: torch.Tensor,
    rows: list[LmRow | None],
) -> dict[int, tuple[list[int], list[float]]]:
    """Batched greedy decoding from the last hidden state of each row until all have stopped:
    each row's ids and the log-probability of every token it chose (the ending one too)."""
    outs: dict[int, list[int]] = {i: [] for i, r in enumerate(rows) if r is not None}
    logps: dict[int, list[float]] = {i: [] for i in outs}
    live = {i for i, r in enumerate(rows) if r is not None and r.budget > 0}
    guard = engine.guard if engine.settings.repetition_guard else None
    embed = engine.model.get_input_embeddings()
    j = 0
    while live:
        toks, chosen_logps = _choose(engine, hidden, rows, outs, live)
        for i in sorted(live):
            row = rows[i]
            assert row is not None
            out = outs[i]
            tok = int(toks[i])
            if row.scripted is not None and len(out) >= len(row.scripted):
                live.discard(i)  # the script is all said: the text ends
                continue
            logps[i].append(chosen_logps[i])
            if row.scripted is None and tok in engine.eos_ids:
                live.discard(i)
                continue
            out.append(tok)
            loop = guard.loop_start([*row.forced, *out]) if guard is not None else None
            if loop is not None:
                del out[max(0, loop - len(row.forced)) :]
                del logps[i][len(out) :]
                live.discard(i)
            elif len(out) >= row.budget:
                live.discard(i)
            toks[i] = tok
        if not live:
            break
        ids = torch.tensor(toks, device=hidden.device)[:, None]
        mask = _causal(valid[:, : column + j + 1], column + j, 1, engine.dtype)
        hidden = run_lm(lm, embed(ids), cache, mask=mask, positions=(next_pos + j)[:, None])[:, -1]
        j += 1
    return {i: (outs[i], logps[i]) for i in outs}
