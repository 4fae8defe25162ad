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
def lm_round(engine: Any, store: SlotStore, rows: list[LmRow]) -> list[list[int]]:
    """Every row's generated ids, from one batched prefill and one batched greedy loop."""
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
    hidden = run_lm(lm, embeds, cache, mask=mask, positions=positions)[:, -1]
    next_pos = torch.tensor([s.length + n for s, n in zip(slots, lengths, strict=True)], device=dev)
    outs = _greedy(
        engine, lm, cache, hidden, valid, write + n_max, next_pos, [by_index.get(s.index) for s in slots]
    )
    return [outs[r.slot.index - lo] for r in rows]


def _greedy(
    engine: Any,
    lm: Any,
    cache: Any,
    hidden: torch.Tensor,
    valid: torch.Tensor,
    column: int,
    next_pos: torch.Tensor,
    rows: list[LmRow | None],
) -> dict[int, list[int]]:
    """Batched greedy decoding from the last hidden state of each row until all have stopped."""
    outs: dict[int, list[int]] = {i: [] for i, r in enumerate(rows) if r is not None}
    live = {i for i, r in enumerate(rows) if r is not None and r.budget > 0}
    guard = engine.guard if engine.settings.repetition_guard else None
    embed = engine.model.get_input_embeddings()
    j = 0
    while live:
        toks = engine.model.lm_head(hidden).argmax(-1).tolist()
        for i in sorted(live):
            row = rows[i]
            assert row is not None
            out = outs[i]
            tok = int(toks[i])
            if row.scripted is not None:
                if len(out) >= len(row.scripted):  # the script is all said: the text ends
                    live.discard(i)
                    continue
                tok = int(row.scripted[len(out)])
            elif tok in engine.eos_ids:
                live.discard(i)
                continue
            out.append(tok)
            loop = guard.loop_start([*row.forced, *out]) if guard is not None else None
            if loop is not None:
                del out[max(0, loop - len(row.forced)) :]
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
    return outs
