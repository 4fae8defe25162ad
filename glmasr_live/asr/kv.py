"""Key/value memory of many streams' prompt prefixes, in fixed slots of one store per model.

Layout: for every LM layer one key and one value tensor ``[slots, kv_heads, columns, head_dim]``.
A stream in an utterance holds one slot (one row); its prefix (prompt head + closed blocks still
in the prompt) fills columns ``[0, length)`` of that row. Everything to the right of ``length``
is scratch.

Why this layout and not a ``DynamicCache`` per stream gathered into a batch each round:
- gathering copies every due stream's whole prefix each round, and ``DynamicCache`` then copies
  the whole batch again on every generated token (``torch.cat``); here a round runs on a *view*
  of the rows it needs (``keys[lo:hi]``) and writes its tokens in place, so per round nothing is
  copied but the new tokens themselves;
- rows have different prefix lengths: a round writes all its rows' new tokens from one common
  column ``W`` (the longest prefix among them) and gives each row its own position ids and a 4-D
  mask that hides the gap between its prefix and ``W``, so the LM computes for every row exactly
  what it would compute alone (the exactness tests check this token for token);
- the round's tokens are scratch (only block closes extend a prefix, one stream at a time at its
  own column), so no crop or copy-back is needed after a round;
- slots stay dense: when a stream lets go of its slot the last slot's prefix moves into the hole
  (one prefix copied, once per utterance end), so the rows of a round are nearly always one
  contiguous range; rows inside the range without work ride along masked (cheap: their queries
  are padding) instead of being gathered out.
The store grows by doubling (rows or columns) when needed; that copy is rare and amortised.
It does not shrink after a peak: like a pool, the next streams reuse its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Slot:
    """A stream's row in the store: ``index`` changes when slots are compacted."""

    index: int
    length: int = 0  # columns [0, length) hold the stream's prefix
    released: bool = False


class SlotStore:
    """The per-layer key/value tensors and the slots handed out to streams."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        self.dtype, self.device = dtype, device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.slots: list[Slot] = []
        self.heads: dict[tuple[int, ...], Slot] = {}  # prompt head -> the slot that keeps it
        self._alloc(4, 64)

    @torch.inference_mode()
    def _alloc(self, rows: int, columns: int) -> None:
        shape = (rows, self.kv_heads, columns, self.head_dim)
        old_k, old_v = self.keys, self.values
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)]
        if old_k:
            r, c = old_k[0].shape[0], old_k[0].shape[2]
            for new, old in zip(self.keys + self.values, old_k + old_v, strict=True):
                new[:r, :, :c] = old

    @property
    def rows(self) -> int:
        return self.keys[0].shape[0]

    @property
    def columns(self) -> int:
        return self.keys[0].shape[2]

    @property
    def bytes(self) -> int:
        return 2 * sum(k.numel() * k.element_size() for k in self.keys)

    def ensure_columns(self, columns: int) -> None:
        if columns > self.columns:
            self._alloc(self.rows, max(columns, 2 * self.columns))

    def acquire(self) -> Slot:
        if len(self.slots) == self.rows:
            self._alloc(2 * self.rows, self.columns)
        slot = Slot(len(self.slots))
        self.slots.append(slot)
        return slot

    @torch.inference_mode()
    def release(self, slot: Slot) -> None:
        """Free ``slot`` now; the last slot moves into its row so the rows stay dense."""
        if slot.released:
            return
        slot.released = True
        last = self.slots.pop()
        if last is not slot:
            i, n = slot.index, last.length
            for t in self.keys + self.values:
                t[i, :, :n] = t[last.index, :, :n]
            last.index = i
            self.slots[i] = last
        # The store keeps its size after a peak (a pool: the next streams reuse the rows).

    @torch.inference_mode()
    def copy_prefix(self, src: Slot, dst: Slot, length: int) -> None:
        """Columns ``[0, length)`` of ``src`` into ``dst`` (the prompt head of a new utterance)."""
        for t in self.keys + self.values:
            t[dst.index, :, :length] = t[src.index, :, :length]
        dst.length = length

    def view(self, lo: int, hi: int, write: int) -> RoundCache:
        """A cache over rows ``[lo, hi)`` that writes new tokens from column ``write`` on."""
        return RoundCache([k[lo:hi] for k in self.keys], [v[lo:hi] for v in self.values], write)


class RoundCache:
    """What the LM sees as its cache in one pass: views of store rows, written in place.

    Duck-typed for the transformers LM: attention layers call ``update`` with the new keys and
    values and get back the keys and values to attend over (the views up to the new tokens).
    The 4-D mask passed with it decides what each row may see.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], write: int):
        self.keys, self.values = keys, values
        self.write = [write] * len(keys)
        self.is_compileable = False

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: object,
        **kw: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w, n = self.write[layer_idx], key_states.shape[-2]
        self.keys[layer_idx][:, :, w : w + n] = key_states
        self.values[layer_idx][:, :, w : w + n] = value_states
        self.write[layer_idx] = w + n
        return self.keys[layer_idx][:, :, : w + n], self.values[layer_idx][:, :, : w + n]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.write[layer_idx]
