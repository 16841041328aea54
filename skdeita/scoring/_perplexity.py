"""Response losses of a causal LM, token for token as Superfiltering computes them.

- :func:`encode_rows`: per row, the ids of prompt + response and of the
  response alone, each cut as Superfiltering's ``data_analysis.py`` cuts it;
- :func:`sequence_losses`: a batch of right-padded sequences in one forward
  pass, each row's mean cross-entropy over its own scored tokens only, so a
  loss never depends on the batch or its neighbours; only the scored
  positions go through the output layer when that is exact
  (:func:`split_head`).
"""

from __future__ import annotations

import numpy as np


def encode_truncated(tokenizer, texts: list[str], limits: list[int], full=None):
    """``tokenizer.encode(text, truncation=True, max_length=limit)`` for each text.

    One batched call encodes every text in full; only the texts longer than
    their limit are encoded again with the tokenizer's own truncation, so
    special tokens and the truncation side are the tokenizer's. ``full``: the
    texts' untruncated ids, when already known. Returns ``(ids, cut)``: the
    token ids, and whether each text was cut.
    """
    if not texts:
        return [], []
    if full is None:
        full = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
    out, cut = [], []
    for text, ids, limit in zip(texts, full, limits, strict=True):
        cut.append(len(ids) > limit)
        if cut[-1]:
            ids = tokenizer.encode(text, truncation=True, max_length=limit, verbose=False)
        out.append(ids)
    return out, cut


# Rows tokenized per call: bounds the Python lists of token ids.
_ENCODE_ROWS = 2048


def encode_rows(tokenizer, prompts: list[str], responses: list[str], max_length: int):
    """Per row, as Superfiltering encodes it (``data_analysis.py``): the
    prompt's length encoded alone in full (the response's first token), the
    ids of prompt + response cut at ``max_length``, the ids of the response
    alone cut at ``max_length`` minus the prompt's (cut) length plus one, and
    whether either was cut. Ids are kept as int32 arrays."""
    out = []
    for s in range(0, len(prompts), _ENCODE_ROWS):
        chunk_p, chunk_r = prompts[s : s + _ENCODE_ROWS], responses[s : s + _ENCODE_ROWS]
        m = len(chunk_p)
        full = tokenizer(chunk_p, add_special_tokens=True, verbose=False)["input_ids"]
        cut_prompts, _ = encode_truncated(tokenizer, chunk_p, [max_length] * m, full)
        whole, whole_cut = encode_truncated(
            tokenizer, [p + r for p, r in zip(chunk_p, chunk_r, strict=True)], [max_length] * m
        )
        alone, alone_cut = encode_truncated(
            tokenizer, chunk_r, [max_length - len(p) + 1 for p in cut_prompts]
        )
        for j in range(m):
            out.append(
                (
                    len(full[j]),
                    np.asarray(whole[j], dtype=np.int32),
                    np.asarray(alone[j], dtype=np.int32),
                    bool(whole_cut[j] or alone_cut[j]),
                )
            )
    return out


# Positions whose logits are held at once in the split path (about 32 MB of
# float32 logits, 166 positions of GPT-2's vocabulary): larger blocks leave
# the CPU caches and are slower, smaller ones pay per-call overhead.
_LOGIT_ELEMENTS = 1 << 23


def sequence_losses(lm, sequences: list[list[int]], starts: list[int]) -> np.ndarray:
    """Mean cross-entropy of each sequence's tokens from ``starts[k]`` on.

    Token ``t`` is predicted from the logits at ``t - 1`` (``starts[k] >= 1``),
    as a causal LM's loss with the labels before ``starts[k]`` masked. The
    batch is padded on the right with an attention mask; real tokens keep
    positions ``0 .. n - 1`` (explicit position ids) and never attend to
    padding, and each loss is taken over its own row's tokens only.

    When the model's logits are its output layer applied to its base model's
    hidden states (checked once per model, see :func:`split_head`), only
    the scored positions go through the output layer, a bounded number at a
    time: no ``batch x width x vocabulary`` tensor.
    """
    torch = lm.torch
    b, width = len(sequences), max(len(s) for s in sequences)
    ids = torch.full((b, width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for k, seq in enumerate(sequences):
        ids[k, : len(seq)] = torch.as_tensor(np.asarray(seq, dtype=np.int64))
        mask[k, : len(seq)] = 1
    positions = torch.arange(width, dtype=torch.long).expand(b, width)
    ids, mask, positions = (t.to(lm.device) for t in (ids, mask, positions))
    counts = [len(s) - st for s, st in zip(sequences, starts, strict=True)]
    # (row, position) of every predicting position, row by row.
    rows = torch.cat([torch.full((c,), k, dtype=torch.long) for k, c in enumerate(counts)])
    cols = torch.cat(
        [
            torch.arange(st - 1, len(s) - 1, dtype=torch.long)
            for s, st in zip(sequences, starts, strict=True)
        ]
    )
    rows, cols = rows.to(lm.device), cols.to(lm.device)
    targets = ids[rows, cols + 1]
    split = split_head(lm)
    cross_entropy = torch.nn.functional.cross_entropy
    with torch.inference_mode():
        if split is None:
            logits = lm.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            token_loss = cross_entropy(logits[rows, cols].float(), targets, reduction="none")
        else:
            body, head = split
            hidden = body(
                input_ids=ids, attention_mask=mask, position_ids=positions
            ).last_hidden_state[rows, cols]
            step = max(1, _LOGIT_ELEMENTS // max(1, head.weight.shape[0]))
            token_loss = torch.cat(
                [
                    cross_entropy(
                        head(hidden[i : i + step]).float(), targets[i : i + step], reduction="none"
                    )
                    for i in range(0, len(targets), step)
                ]
            )
    token_loss = token_loss.double().cpu().numpy()
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return np.add.reduceat(token_loss, bounds[:-1]) / np.asarray(counts, dtype=np.float64)


def split_head(lm):
    """``(base model, output layer)`` when the logits are exactly the output
    layer applied to the base model's last hidden states, else None.

    Checked once per loaded model on a short probe against the full forward
    pass; a model that scales or caps its logits after the output layer (or
    is built differently) uses the full forward pass.
    """
    if hasattr(lm, "ifd_split_head"):
        return lm.ifd_split_head
    torch = lm.torch
    split = None
    try:
        body, head = lm.model.base_model, lm.model.get_output_embeddings()
        if body is not lm.model and isinstance(head, torch.nn.Linear):
            probe = lm.encode("Instruction-following difficulty: a short probe sentence.")
            ids = torch.tensor([probe[:16] or [lm.pad_id]], dtype=torch.long, device=lm.device)
            kwargs = dict(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                position_ids=torch.arange(ids.shape[1], device=lm.device)[None],
            )
            with torch.inference_mode():
                full = lm.model(**kwargs).logits.float()
                mine = head(body(**kwargs).last_hidden_state).float()
            if mine.shape == full.shape and torch.allclose(mine, full, rtol=1e-4, atol=1e-4):
                split = (body, head)
    except Exception:  # noqa: BLE001 - any failure just means: use the full forward pass
        split = None
    lm.ifd_split_head = split
    return split
