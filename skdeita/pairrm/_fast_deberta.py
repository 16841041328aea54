"""DeBERTa-v2 forward passes for PairRM: the same operations, less memory traffic.

PairRM's backbone is DeBERTa-v3 (``DebertaV2Model``). Its attention builds,
for every layer, several ``(batch x heads) x length x length`` tensors: the
scores, the gathered content-to-position (``c2p``) and position-to-content
(``p2c``) terms, their 64-bit index tensors, the mask, the softmax. On CPU
these are far bigger than the caches, and the pass is bound by memory
traffic, not arithmetic. :class:`FastForward` stands in for the encoder's
layers during one forward pass and computes exactly what
``DebertaV2Layer.forward`` computes (transformers 4.57 and 5 alike), with:

- attention a block at a time (softmax is per row): several short
  sequences, or a block of one long sequence's query rows, so the
  length x length intermediates of a block stay in cache (on CUDA: one
  block, as the original);
- the relative-position index tensors built once per length, not twice per
  layer, and the pair mask built per block rather than as a
  length x length tensor;
- the position terms computed against the position-table rows a length
  reads only (for a pair shorter than PairRM's 256 buckets, fewer than the
  512 rows the full layer multiplies and gathers from);
- the last layer computed only at the three tokens PairRM's head reads
  (``<|source|>``, ``<|candidate1|>``, ``<|candidate2|>``): keys and values
  still come from every token, the query rows, feed-forward and layer norms
  are computed for those three only.

The element-wise operations are the layer's own, in the same order; matrix
products over row blocks may round differently in the last bit.
"""

from __future__ import annotations

import torch  # this module is imported only once PairRM loads


def supports_fast_forward(model) -> bool:
    """Whether ``model`` is a DeBERTa-v2 encoder this module reproduces exactly."""
    try:
        from transformers.models.deberta_v2 import modeling_deberta_v2 as m
    except ImportError:  # pragma: no cover - transformers always has it
        return False
    if type(model) is not m.DebertaV2Model or getattr(model, "z_steps", 0) > 1:
        return False
    encoder = model.encoder
    if type(encoder) is not m.DebertaV2Encoder or len(encoder.layer) < 1:
        return False
    if len(encoder.layer) < 2 and encoder.conv is not None:
        return False  # the convolution would read every row of the last layer
    layers_ok = all(
        type(layer) is m.DebertaV2Layer
        and type(layer.attention.self) is m.DisentangledSelfAttention
        for layer in encoder.layer
    )
    return layers_ok and not model.config.output_attentions


class RelativeIndex:
    """The relative-position index tensors of a length, cut from the longest built.

    DeBERTa's relative position of tokens ``i`` and ``j`` depends on ``i - j``
    only, so the matrix of a shorter sequence is the top-left corner of a
    longer one. A sequence of length ``L`` reads only the rows of the
    position tables (``2 x span`` rows: 512 for PairRM) that relative
    positions up to ``L - 1`` map to, so the tables are cut to those rows:
    for a short pair, far fewer.
    """

    def __init__(self, config):
        self.buckets = getattr(config, "position_buckets", -1)
        self.max_relative = getattr(config, "max_relative_positions", -1)
        if self.max_relative < 1:
            self.max_relative = config.max_position_embeddings
        self.span = self.buckets if self.buckets > 0 else self.max_relative
        self._full = None  # (c2p index, p2c index) of the longest length
        self._last = None  # (length, device, what get returned): a batch's layers share it

    def get(self, length: int, device):
        """``(c2p index, p2c index, lo, hi)`` of a length.

        ``c2p[q, k]`` and ``p2c[k, q]``: the rows of the position tables that
        query ``q`` and key ``k`` read, minus ``lo``; the rows read are
        ``lo .. hi - 1``.
        """
        device = torch.device(device)
        last = self._last
        if last is not None and last[0] == length and last[1] == device:
            return last[2]
        full = self._full
        if full is None or full[0].size(0) < length or full[0].device != device:
            from transformers.models.deberta_v2.modeling_deberta_v2 import (
                build_relative_position,
            )

            n = max(length, 64 if full is None else full[0].size(0))
            probe = torch.empty(1, n, 1, device=device)
            rel = build_relative_position(
                probe, probe, bucket_size=self.buckets, max_position=self.max_relative
            )[0].to(torch.long)
            span = self.span
            c2p = torch.clamp(rel + span, 0, span * 2 - 1)
            p2c = torch.clamp(-rel + span, 0, span * 2 - 1)
            self._full = full = (c2p, p2c)
        c2p, p2c = (t[:length, :length] for t in full)
        lo = int(torch.minimum(c2p.min(), p2c.min()))
        hi = int(torch.maximum(c2p.max(), p2c.max())) + 1
        out = (c2p - lo, p2c - lo, lo, hi)
        self._last = (length, device, out)
        return out


class FastForward:
    """Context manager: inside it, ``model(input_ids, attention_mask)`` runs fast.

    Its ``last_hidden_state`` then has shape ``(batch, n_positions, hidden)``:
    row ``p`` is the full model's last hidden state at token
    ``positions[:, p]``.
    """

    def __init__(self, model, positions, index: RelativeIndex, block_elements: int | None):
        self.model = model
        self.positions = positions  # LongTensor (batch, n_positions)
        self.index = index
        self.block_elements = block_elements  # None: whole-length blocks

    def __enter__(self):
        encoder = self.model.encoder
        self._layers = list(encoder.layer)
        last = len(self._layers) - 1
        for i, layer in enumerate(self._layers):
            rows = self.positions if i == last else None
            encoder.layer[i] = _Layer(layer, rows, self)
        # The layers here take the (batch, length) mask and build their own
        # position indices: the encoder's length x length versions are not needed.
        encoder.get_attention_mask = _keep_mask
        encoder.get_rel_pos = _no_rel_pos
        return self

    def __exit__(self, *exc):
        encoder = self.model.encoder
        for i, layer in enumerate(self._layers):
            encoder.layer[i] = layer
        del encoder.get_attention_mask, encoder.get_rel_pos
        return False


def _keep_mask(attention_mask):
    return attention_mask


def _no_rel_pos(hidden_states, query_states=None, relative_pos=None):
    return None


class _Layer(torch.nn.Module):
    """``DebertaV2Layer.forward`` for all rows (by blocks) or for ``rows`` only."""

    def __init__(self, layer, rows, owner: FastForward):
        super().__init__()
        self.layer = layer
        self.rows = rows
        self.owner = owner

    def forward(
        self,
        hidden_states,
        attention_mask,
        query_states=None,
        relative_pos=None,
        rel_embeddings=None,
        output_attentions=False,
    ):
        if query_states is not None or output_attentions or attention_mask.dim() != 2:
            raise NotImplementedError("FastForward: plain forward passes only")
        layer = self.layer
        att = layer.attention.self
        heads = att.num_attention_heads
        n_batch, length, _ = hidden_states.shape
        mask = attention_mask.bool()  # (B, L)
        if self.rows is None:
            inputs = hidden_states
        else:
            batch = torch.arange(n_batch, device=hidden_states.device)[:, None]
            inputs = hidden_states[batch, self.rows]  # (B, P, H)
        query = att.transpose_for_scores(att.query_proj(inputs), heads)  # (B*h, R, d)
        key = att.transpose_for_scores(att.key_proj(hidden_states), heads)  # (B*h, L, d)
        value = att.transpose_for_scores(att.value_proj(hidden_states), heads)

        scale_factor = 1 + ("c2p" in att.pos_att_type) + ("p2c" in att.pos_att_type)
        key_t = key.transpose(-1, -2) / _scale(query, scale_factor).to(dtype=query.dtype)
        terms = self._position_terms(query, key, rel_embeddings, scale_factor, n_batch, length)
        if self.rows is None:
            context = self._blocks(query, key_t, value, terms, mask, n_batch, length)
        else:
            context = self._rows(query, key, key_t, value, terms, mask, n_batch, length)
        context = (
            context.view(-1, heads, context.size(-2), context.size(-1))
            .permute(0, 2, 1, 3)
            .contiguous()
        )
        context = context.view(context.size()[:-2] + (-1,))
        attention_output = layer.attention.output(context, inputs)
        out = layer.output(layer.intermediate(attention_output), attention_output)
        return (out, None)

    # -- relative position terms ---------------------------------------------------------

    def _position_terms(self, query, key, rel_embeddings, scale_factor, n_batch, length):
        """What the blocks need of ``disentangled_attention_bias``."""
        att = self.layer.attention.self
        if not att.relative_attention:
            return None
        heads = att.num_attention_heads
        span = att.pos_ebd_size
        rel_embeddings = att.pos_dropout(rel_embeddings)[0 : span * 2, :].unsqueeze(0)
        pos_key = pos_query = None
        if att.share_att_key:
            pos_query = att.transpose_for_scores(att.query_proj(rel_embeddings), heads)
            pos_key = att.transpose_for_scores(att.key_proj(rel_embeddings), heads)
        else:
            if "c2p" in att.pos_att_type:
                pos_key = att.transpose_for_scores(att.pos_key_proj(rel_embeddings), heads)
            if "p2c" in att.pos_att_type:
                pos_query = att.transpose_for_scores(att.pos_query_proj(rel_embeddings), heads)
        c2p_index, p2c_index, lo, hi = self.owner.index.get(length, query.device)
        terms = {}
        # Only the table rows this length reads (the full layer multiplies all
        # 2 x span and gathers from them: the same products, the same values).
        if "c2p" in att.pos_att_type:
            terms["c2p_scale"] = _scale(pos_key, scale_factor)
            pos_key = pos_key[:, lo:hi]
            # (B*h, R, hi - lo): query . every relative position read
            terms["c2p"] = torch.bmm(query, pos_key.repeat(n_batch, 1, 1).transpose(-1, -2))
            terms["c2p_index"] = c2p_index
        if "p2c" in att.pos_att_type:
            terms["p2c_scale"] = _scale(pos_query, scale_factor)
            pos_query = pos_query[:, lo:hi]
            terms["pos_query"] = pos_query  # (h, hi - lo, d)
            terms["p2c_index"] = p2c_index
            if self.rows is None:
                # (B*h, L, hi - lo): key . every relative position read; a block
                # of query rows gathers its (L, n) slice, as the full layer does.
                terms["p2c"] = torch.bmm(key, pos_query.repeat(n_batch, 1, 1).transpose(-1, -2))
        return terms

    # -- attention ------------------------------------------------------------------------

    def _attend(self, scores, mask_rows, value, n_batch):
        """Mask, softmax and values: the layer's own steps for a block of rows."""
        att = self.layer.attention.self
        scores = scores.view(n_batch, -1, scores.size(-2), scores.size(-1))
        scores = scores.masked_fill(~mask_rows, torch.finfo(scores.dtype).min)
        probs = att.dropout(torch.nn.functional.softmax(scores, dim=-1))
        return torch.bmm(probs.view(-1, probs.size(-2), probs.size(-1)), value)

    def _blocks(self, query, key_t, value, terms, mask, n_batch, length):
        """Every query row, by blocks of about ``block_elements`` attention scores:
        several whole sequences per block when they are short (long inner
        loops), else a block of one sequence's query rows."""
        size = self.owner.block_elements
        heads = query.size(0) // n_batch
        per_sequence = heads * length * length
        if size is None:
            seqs, step = n_batch, length
        elif per_sequence <= size:
            seqs, step = size // per_sequence, length
        else:
            seqs, step = 1, max(16, size // (heads * length))
        out = []
        for first in range(0, n_batch, seqs):
            batch = slice(first, min(first + seqs, n_batch))
            n_seqs = batch.stop - batch.start
            hs = slice(batch.start * heads, batch.stop * heads)
            rows = [
                self._block(query, key_t, value, terms, mask, batch, hs, n_seqs, start, step)
                for start in range(0, length, step)
            ]
            out.append(rows[0] if len(rows) == 1 else torch.cat(rows, dim=1))
        return out[0] if len(out) == 1 else torch.cat(out, dim=0)

    def _block(self, query, key_t, value, terms, mask, batch, hs, n_seqs, start, step):
        """Attention of query rows ``start .. start + step`` of sequences ``batch``."""
        length = key_t.size(-1)
        block = slice(start, min(start + step, length))
        n = block.stop - block.start
        scores = torch.bmm(query[hs, block], key_t[hs])  # (b*h, n, L)
        if terms is not None:
            rel = 0
            shape = (scores.size(0), n, length)
            if "c2p" in terms:
                c2p = torch.gather(
                    terms["c2p"][hs, block], -1, terms["c2p_index"][block].expand(shape)
                )
                rel = c2p / terms["c2p_scale"].to(dtype=c2p.dtype)
            if "p2c" in terms:
                index = terms["p2c_index"][:, block].expand(scores.size(0), length, n)
                p2c = torch.gather(terms["p2c"][hs], -1, index).transpose(-1, -2)
                rel = rel + p2c / terms["p2c_scale"].to(dtype=p2c.dtype)
            scores = scores + rel
        rows_mask = mask[batch, block, None] & mask[batch, None, :]
        return self._attend(scores, rows_mask.unsqueeze(1), value[hs], n_seqs)

    def _rows(self, query, key, key_t, value, terms, mask, n_batch, length):
        """Only the query rows ``self.rows`` (the last layer)."""
        rows = self.rows  # (B, P)
        heads = query.size(0) // n_batch
        n_pos = rows.size(1)
        scores = torch.bmm(query, key_t)  # (B*h, P, L)
        if terms is not None:
            rel = 0
            if "c2p" in terms:
                index = terms["c2p_index"][rows]  # (B, P, L)
                index = index[:, None].expand(n_batch, heads, n_pos, length)
                c2p = torch.gather(terms["c2p"], -1, index.reshape(-1, n_pos, length))
                rel = c2p / terms["c2p_scale"].to(dtype=c2p.dtype)
            if "pos_query" in terms:
                # The full layer keeps p2c[q, k] = key_k . pos_query[p2c_index[k, q]]:
                # for P query rows, P position vectors per key.
                index = terms["p2c_index"][:, rows].permute(1, 0, 2)  # (B, L, P)
                picked = terms["pos_query"][:, index]  # (h, B, L, P, d)
                keys = key.view(n_batch, heads, length, key.size(-1))
                p2c = torch.einsum("hblpd,bhld->bhpl", picked, keys).reshape(-1, n_pos, length)
                rel = rel + p2c / terms["p2c_scale"].to(dtype=p2c.dtype)
            scores = scores + rel
        batch = torch.arange(n_batch, device=rows.device)[:, None]
        mask_rows = (mask[batch, rows][:, :, None] & mask[:, None, :]).unsqueeze(1)
        return self._attend(scores, mask_rows, value, n_batch)


def _scale(layer, scale_factor: int):
    """transformers' ``scaled_size_sqrt``."""
    return torch.sqrt(torch.tensor(layer.size(-1), dtype=torch.float) * scale_factor)
