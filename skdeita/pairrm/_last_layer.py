"""The last DeBERTa-v2 layer, computed only where PairRM's head reads it.

PairRM's head reads three hidden states of the last layer: those of the
``<|source|>``, ``<|candidate1|>`` and ``<|candidate2|>`` tokens. Every other
row of the last layer's attention, feed-forward and layer norms is computed
and thrown away. :class:`LastLayerAt` stands in for the encoder's last layer
during a forward pass and computes the same operations as
``DebertaV2Layer.forward`` (transformers 4.57 and 5 alike), for those query
rows only: keys and values still come from every token, the relative
position terms (``c2p``, ``p2c``) are gathered for the selected rows, and the
masks, scales, softmax and layer norms are the layer's own.

It saves one layer's worth of work out of ``num_hidden_layers``: half of a
2-layer test ranker, 1/24 of DeBERTa-v3-large (PairRM). Results agree with
the full layer to float rounding (the matrix products run over fewer rows).
"""

from __future__ import annotations

import torch  # this module is imported only once PairRM loads


def supports_last_layer_at(model) -> bool:
    """Whether ``model`` is a DeBERTa-v2 encoder this module knows exactly."""
    try:
        from transformers.models.deberta_v2 import modeling_deberta_v2 as m
    except ImportError:  # pragma: no cover - transformers always has it
        return False
    if type(model) is not m.DebertaV2Model or getattr(model, "z_steps", 0) > 1:
        return False
    layers = model.encoder.layer
    if len(layers) < 2 and model.encoder.conv is not None:
        return False  # the convolution would read the last layer's every row
    last = layers[-1]
    return (
        type(last) is m.DebertaV2Layer
        and type(last.attention.self) is m.DisentangledSelfAttention
        and not model.config.output_attentions
    )


class LastLayerAt:
    """Context manager: the encoder's last layer computes only ``positions``.

    Inside it, ``model(...).hidden_states[-1]`` has shape
    ``(batch, n_positions, hidden)``: row ``p`` is the full layer's output at
    token ``positions[:, p]``.
    """

    def __init__(self, model, positions):
        self.model = model
        self.positions = positions  # LongTensor (batch, n_positions)

    def __enter__(self):
        layers = self.model.encoder.layer
        self._last = layers[-1]
        layers[-1] = _Rows(self._last, self.positions)
        return self

    def __exit__(self, *exc):
        self.model.encoder.layer[-1] = self._last
        return False


class _Rows(torch.nn.Module):
    def __init__(self, layer, positions):
        super().__init__()
        self.layer = layer
        self.positions = positions

    def forward(
        self,
        hidden_states,
        attention_mask,
        query_states=None,
        relative_pos=None,
        rel_embeddings=None,
        output_attentions=False,
    ):
        if query_states is not None or output_attentions:
            raise NotImplementedError("LastLayerAt: plain forward passes only")
        layer = self.layer
        att = layer.attention.self
        pos = self.positions
        batch = torch.arange(hidden_states.size(0), device=hidden_states.device)[:, None]
        rows = hidden_states[batch, pos]  # (B, P, H): the query rows
        heads = att.num_attention_heads
        query = att.transpose_for_scores(att.query_proj(rows), heads)  # (B*h, P, d)
        key = att.transpose_for_scores(att.key_proj(hidden_states), heads)  # (B*h, L, d)
        value = att.transpose_for_scores(att.value_proj(hidden_states), heads)

        scale_factor = 1 + ("c2p" in att.pos_att_type) + ("p2c" in att.pos_att_type)
        scale = _scale(query, scale_factor)
        scores = torch.bmm(query, key.transpose(-1, -2) / scale.to(dtype=query.dtype))
        if att.relative_attention:
            rel_embeddings = att.pos_dropout(rel_embeddings)
            scores = scores + self._relative_bias(
                query, key, relative_pos, rel_embeddings, scale_factor, pos
            )
        scores = scores.view(-1, heads, scores.size(-2), scores.size(-1))  # (B, h, P, L)
        mask = _mask_rows(attention_mask, pos, batch)  # (B, 1, P, L)
        scores = scores.masked_fill(~mask, torch.finfo(query.dtype).min)
        probs = att.dropout(torch.nn.functional.softmax(scores, dim=-1))
        context = torch.bmm(probs.view(-1, probs.size(-2), probs.size(-1)), value)
        context = (
            context.view(-1, heads, context.size(-2), context.size(-1))
            .permute(0, 2, 1, 3)
            .contiguous()
        )
        context = context.view(context.size()[:-2] + (-1,))
        attention_output = layer.attention.output(context, rows)
        out = layer.output(layer.intermediate(attention_output), attention_output)
        return (out, None)

    def _relative_bias(self, query, key, relative_pos, rel_embeddings, scale_factor, pos):
        """``disentangled_attention_bias`` for the query rows ``pos``."""
        att = self.layer.attention.self
        heads = att.num_attention_heads
        length = key.size(-2)
        if relative_pos is None:
            from transformers.models.deberta_v2.modeling_deberta_v2 import (
                build_relative_position,
            )

            relative_pos = build_relative_position(
                key, key, bucket_size=att.position_buckets, max_position=att.max_relative_positions
            )
        relative_pos = relative_pos.to(device=query.device, dtype=torch.long)
        relative_pos = relative_pos.reshape(-1, length, length)
        if relative_pos.size(0) != 1:
            raise NotImplementedError("LastLayerAt: one relative position matrix per batch")
        relative_pos = relative_pos[0]  # (L, L)
        span = att.pos_ebd_size
        n_batch = query.size(0) // heads
        rel_embeddings = rel_embeddings[0 : span * 2, :].unsqueeze(0)
        # Position projections, (h, 2span, d): the same for every batch item.
        if att.share_att_key:
            pos_query = att.transpose_for_scores(att.query_proj(rel_embeddings), heads)
            pos_key = att.transpose_for_scores(att.key_proj(rel_embeddings), heads)
        else:
            if "c2p" in att.pos_att_type:
                pos_key = att.transpose_for_scores(att.pos_key_proj(rel_embeddings), heads)
            if "p2c" in att.pos_att_type:
                pos_query = att.transpose_for_scores(att.pos_query_proj(rel_embeddings), heads)

        n_pos = pos.size(1)
        score = 0
        if "c2p" in att.pos_att_type:
            scale = _scale(pos_key, scale_factor)
            pos_key = pos_key.repeat(n_batch, 1, 1)  # (B*h, 2span, d), as the full layer
            c2p = torch.bmm(query, pos_key.transpose(-1, -2))  # (B*h, P, 2span)
            index = torch.clamp(relative_pos[pos] + span, 0, span * 2 - 1)  # (B, P, L)
            index = index[:, None].expand(n_batch, heads, n_pos, length)
            c2p = torch.gather(c2p, dim=-1, index=index.reshape(-1, n_pos, length))
            score += c2p / scale.to(dtype=c2p.dtype)
        if "p2c" in att.pos_att_type:
            scale = _scale(pos_query, scale_factor)
            # The full layer computes key . pos_query for all 2*span positions and
            # keeps p2c[q, k] = (key_k . pos_query)[clamp(-rel[k, q] + span)]; for
            # P query rows only those P position vectors per key are needed.
            index = torch.clamp(-relative_pos[:, pos] + span, 0, span * 2 - 1)  # (L, B, P)
            picked = pos_query[:, index.permute(1, 0, 2)]  # (h, B, L, P, d)
            keys = key.view(n_batch, heads, length, key.size(-1))
            p2c = torch.einsum("hblpd,bhld->bhpl", picked, keys).reshape(-1, n_pos, length)
            score += p2c / scale.to(dtype=p2c.dtype)
        return score


def _scale(layer, scale_factor: int):
    """transformers' ``scaled_size_sqrt``."""
    return torch.sqrt(torch.tensor(layer.size(-1), dtype=torch.float) * scale_factor)


def _mask_rows(attention_mask, pos, batch):
    """Rows ``pos`` of the encoder's attention mask, as a bool (B, 1, P, L)."""
    if attention_mask.dim() == 4:  # (B, 1, L, L), the encoder's get_attention_mask
        return attention_mask[:, 0][batch, pos].unsqueeze(1).bool()
    if attention_mask.dim() == 3:
        return attention_mask[batch, pos].unsqueeze(1).bool()
    raise NotImplementedError("LastLayerAt: unexpected attention mask")
