"""Scoring every ordered candidate pair of every row with a loaded PairRM.

llm-blender's ``Blender.rank`` runs one forward pass per ordered candidate pair
over a batch of rows padded to that batch's longest pair. Here the same model
(built by :mod:`._loading` from llm-blender's own classes), the same
tokenisation (its own collator, called once per row) and the same head (its
ranker's ``reduce``) score every ordered pair of every row; only the
scheduling differs:

- each row is tokenised once (llm-blender's collator), and its pairs are
  assembled from those token ids, exactly as the ranker's ``cat_ids`` and
  column trimming assemble them;
- the pairs of all rows are sorted by length and cut into batches under a
  token budget (``max_batch_tokens`` padded tokens per forward pass), so
  padding is only up to the longest pair of a batch of near-equal lengths
  and short pairs go many to a pass;
- identical candidates of a row are scored once;
- on DeBERTa-v2 backbones (PairRM's), :mod:`._fast_deberta` runs the same
  layers with attention a block of rows at a time (in cache on CPU) and the
  last layer only at the three tokens the head reads;
- everything runs under ``torch.inference_mode``.

The comparison matrix and the score formula are llm-blender's.

One deliberate difference: llm-blender gives each candidate
``candidate_max_length + (source_max_length - longest source in the batch) // 2``
tokens, so a row's result can depend on its neighbours in a batch. Here each
row uses its own source length, which is llm-blender with ``batch_size=1``:
results do not depend on batching or row order.
"""

from __future__ import annotations

import copy
import threading

import numpy as np

from ..utils._loading import TorchModule
from ..utils._optional import require
from ..utils._progress import progress_bar
from ..utils._units import batch_plan
from ._loading import DEFAULT_PAIRRM, LoadedRanker

__all__ = [
    "CandidatePairs",
    "DEFAULT_PAIRRM",
    "PairScorer",
    "default_batch_tokens",
    "ranks_from_scores",
    "scores_from_matrix",
]


def default_batch_tokens(device: str) -> int:
    """Padded tokens per forward pass when ``max_batch_tokens=None``."""
    return 32768 if str(device).startswith("cuda") else 8192


def attention_cap(device: str, fast: bool) -> int:
    """Most attention scores (batch x heads x length^2) per forward pass.

    Without the fast DeBERTa forward (other backbones), CPU batches stay under
    glibc's mmap threshold (32 MiB at most): bigger tensors are fresh pages on
    every allocation, paid for in page faults. The fast forward never builds
    such tensors on CPU. On CUDA the cap only bounds memory.
    """
    if str(device).startswith("cuda"):
        return 2**30
    return 2**40 if fast else 2**23


def block_elements(device: str) -> int | None:
    """Attention scores per row block of the fast forward: about 2 MiB on CPU
    (a core's cache), the whole length on CUDA."""
    return None if str(device).startswith("cuda") else 2**19


class PairScorer(TorchModule):
    """Comparison matrices of candidate pairs with a loaded llm-blender ranker."""

    def __init__(self, loaded: LoadedRanker, *, fast_forward: bool = True):
        from ._fast_deberta import RelativeIndex, supports_fast_forward

        require("torch", "PairRMRanker")
        self.loaded = loaded
        self.ranker = loaded.ranker
        self.tokenizer = loaded.tokenizer
        self.collator = loaded.collator
        self.config = loaded.config
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.sep_id = self.ranker.sep_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = 0 if pad is None else int(pad)
        tok = self.tokenizer
        self.source_id = tok.source_prefix_id
        self.cand_id, self.cand1_id, self.cand2_id = (
            tok.cand_prefix_id,
            tok.cand1_prefix_id,
            tok.cand2_prefix_id,
        )
        self.encoder_decoder = bool(self.ranker.is_encoder_decoder)
        model = self.ranker.pretrained_model
        self.fast_forward = fast_forward and supports_fast_forward(model)
        self.relative_index = RelativeIndex(model.config) if self.fast_forward else None
        self.heads = int(getattr(model.config, "num_attention_heads", 1) or 1)
        self.attention_cap = attention_cap(self.device, self.fast_forward)
        self.block_elements = block_elements(self.device)
        # FastForward swaps the encoder's layers for one forward pass: one
        # thread at a time (the model is shared by every clone in the process).
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- limits ------------------------------------------------------------------------

    def limits(self, source_max_length=None, candidate_max_length=None) -> tuple[int, int]:
        """Effective token limits: the explicit ones, else the ranker config's."""
        source = source_max_length or self.config.source_maxlength
        candidate = candidate_max_length or self.config.candidate_maxlength
        for name, value, field in (
            ("source_max_length", source, "source_maxlength"),
            ("candidate_max_length", candidate, "candidate_maxlength"),
        ):
            if not value:
                raise ValueError(
                    f"The ranker config ({self.loaded.path}/config.json) sets no {field}; "
                    f"pass {name}=."
                )
        return int(source), int(candidate)

    def _collator(self, source_max_length, candidate_max_length):
        collator = copy.copy(self.collator)
        collator.source_maxlength = source_max_length
        collator.candidate_maxlength = candidate_max_length
        return collator

    # -- tokens --------------------------------------------------------------------------

    def _row_tokens(self, collator, source: str, candidates: list[str]):
        """A row's segments, exactly as llm-blender's collator and ``cat_ids`` cut them.

        Each of the source and the candidates is ``(head, tail)``: the tokens up
        to and including its last separator, and those after it, padding
        dropped. llm-blender's pair is ``src.head + c1.head + c2.head + src.tail
        + c1.tail + c2.tail`` with every padded column removed (one row per
        batch); tails are empty for every usual tokenizer.
        """
        batch = collator([{"index": 0, "source": source, "candidates": candidates}])
        src = self._split(batch["source_ids"][0], batch["source_attention_mask"][0])
        ids, masks = batch["candidate_ids"][0], batch["candidate_attention_mask"][0]
        return src, [self._split(i, m) for i, m in zip(ids, masks, strict=True)]

    def _rows_tokens(self, collator, sources: list[str], rows: list[list[str]]):
        """``_rows_tokens_unlocked`` for one thread at a time: a fast tokenizer's
        truncation setting is shared state (transformers 4 raises "Already
        borrowed" when two threads tokenize with different limits)."""
        with self._lock:
            return self._rows_tokens_unlocked(collator, sources, rows)

    def _rows_tokens_unlocked(self, collator, sources: list[str], rows: list[list[str]]):
        """``_row_tokens`` of many rows, with a few batched tokenizer calls.

        For a tokenizer that adds its own separator (DeBERTa's ``[SEP]``, the
        collator's usual path) the collator's ``encode_texts`` is the
        tokenizer with ``truncation=True`` and padding that is dropped again:
        the same ids come from unpadded batch calls, sources first, then the
        candidates of all rows that share a length limit. Other tokenizers
        go through the collator row by row.
        """
        if not sources:
            return []
        if collator.mannually_add_sep_token:
            return [self._row_tokens(collator, s, c) for s, c in zip(sources, rows, strict=True)]
        tok, sep = self.tokenizer, collator.sep_token
        limit_s, limit_c = collator.source_maxlength, collator.candidate_maxlength
        texts = [(collator.source_prefix + s).replace(sep, " ") for s in sources]
        src_ids = tok(texts, max_length=limit_s, truncation=True)["input_ids"]
        # The collator's candidate limit: its own plus half of what the source leaves.
        limits = [limit_c + (limit_s - len(ids)) // 2 for ids in src_ids]
        cand_ids: list[list] = [[None] * len(c) for c in rows]
        by_limit: dict[int, list[tuple[int, int]]] = {}
        for r, (limit, cands) in enumerate(zip(limits, rows, strict=True)):
            by_limit.setdefault(limit, []).extend((r, i) for i in range(len(cands)))
        for limit, where in by_limit.items():
            texts = [(collator.candidate_prefix + rows[r][i]).replace(sep, " ") for r, i in where]
            encoded = tok(texts, max_length=limit, truncation=True)["input_ids"]
            for (r, i), ids in zip(where, encoded, strict=True):
                cand_ids[r][i] = ids
        return [
            (self._split_ids(s), [self._split_ids(c) for c in cands])
            for s, cands in zip(src_ids, cand_ids, strict=True)
        ]

    def _split_ids(self, ids):
        ids = np.asarray(ids, dtype=np.int64)
        return self._split(ids, np.ones(len(ids), dtype=bool))

    def _split(self, ids, mask):
        if not isinstance(ids, np.ndarray):
            ids, mask = ids.numpy(), mask.numpy()
        keep = np.asarray(mask).astype(bool)
        seps = np.flatnonzero(ids == self.sep_id)
        if not len(seps):
            raise ValueError(
                "The ranker's tokenizer put no separator token in a text; llm-blender's "
                "pairwise ranker needs one at the end of the source and of each candidate."
            )
        cut = seps[-1] + 1
        return ids[:cut][keep[:cut]], ids[cut:][keep[cut:]]

    def _pair(self, src, left, right) -> tuple[np.ndarray, tuple[int, int, int]]:
        ids = np.concatenate([src[0], left[0], right[0], src[1], left[1], right[1]])
        where = []
        for token in (self.source_id, self.cand1_id, self.cand2_id):
            hit = np.flatnonzero(ids == token)
            if not len(hit):
                raise ValueError(
                    "A pair lost its <|source|> or <|candidate|> marker to truncation; "
                    "check the tokenizer's truncation side."
                )
            where.append(int(hit[0]))
        return ids, tuple(where)

    # -- scoring -------------------------------------------------------------------------

    def matrices(
        self,
        sources: list[str],
        candidates: list[list[str]],
        *,
        source_max_length: int | None = None,
        candidate_max_length: int | None = None,
        max_batch_tokens: int | None = None,
        batch_size: int | None = None,
        progress=None,
    ) -> list[np.ndarray]:
        """For each row, the matrix ``M[i, j]``: logit that candidate i beats j.

        Identical candidates share one computation; their own pairs are 0
        (they cancel in the score either way).
        """
        pairs = CandidatePairs.of(sources, candidates)
        logits = np.zeros(len(pairs.left), dtype=np.float32)
        with progress_bar(len(logits), "PairRM pairs", progress) as bar:
            for idx, values in self.iter_pair_logits(
                pairs.sources,
                pairs.left,
                pairs.right,
                np.zeros(len(logits), dtype=bool),
                source_max_length=source_max_length,
                candidate_max_length=candidate_max_length,
                max_batch_tokens=max_batch_tokens,
                batch_size=batch_size,
            ):
                logits[idx] = values
                bar.update(len(idx))
        return pairs.matrices(logits)

    def iter_pair_logits(
        self,
        sources: list[str],
        left: list[str],
        right: list[str],
        isolated: np.ndarray,
        *,
        source_max_length: int | None = None,
        candidate_max_length: int | None = None,
        max_batch_tokens: int | None = None,
        batch_size: int | None = None,
    ):
        """Yield ``(positions, logits)``: for each pair ``k``, the logit that
        ``left[k]`` beats ``right[k]`` as an answer to ``sources[k]``, a batch
        at a time. Pairs marked ``isolated`` are scored in batches of one."""
        collator = self._collator(*self.limits(source_max_length, candidate_max_length))
        rows: dict[str, dict[str, int]] = {}  # source -> its candidates' positions
        for src, a, b in zip(sources, left, right, strict=True):
            cands = rows.setdefault(src, {})
            cands.setdefault(a, len(cands))
            cands.setdefault(b, len(cands))
        if self.encoder_decoder:
            yield from self._row_by_row(collator, sources, left, right, rows, isolated)
            return
        order = list(rows)
        segments = self._rows_tokens(collator, order, [list(rows[s]) for s in order])
        tokens = dict(zip(order, segments, strict=True))
        pairs = []  # (token ids, (source, cand1, cand2) positions)
        for src, a, b in zip(sources, left, right, strict=True):
            src_seg, cand_segs = tokens[src]
            where = rows[src]
            pairs.append(
                self._pair(
                    src_seg,
                    self._marked(cand_segs[where[a]], self.cand1_id),
                    self._marked(cand_segs[where[b]], self.cand2_id),
                )
            )
        budget = max_batch_tokens or default_batch_tokens(self.device)
        lengths = np.array([len(p[0]) for p in pairs], dtype=np.int64)
        plan = batch_plan(isolated, lambda idx: self.batches(lengths[idx], budget, batch_size))
        with self.torch.inference_mode():
            for idx in plan:
                yield idx, self._score_batch([pairs[k] for k in idx])

    def _marked(self, segment, marker):
        """``<|candidate|>`` replaced by ``marker``, as the ranker's ``_forward`` does."""
        return tuple(np.where(part == self.cand_id, marker, part) for part in segment)

    def batches(self, lengths, max_batch_tokens: int, batch_size: int | None):
        """Pair indices, longest first, cut so that ``n * longest <= max_batch_tokens``
        (and ``n * heads * longest**2 <= attention_cap``)."""
        order = np.argsort(-np.asarray(lengths), kind="stable")
        start = 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)
            n = min(max_batch_tokens // width, self.attention_cap // (self.heads * width * width))
            n = max(1, n)
            if batch_size is not None:
                n = min(n, batch_size)
            yield order[start : start + n]
            start += n

    def _score_batch(self, pairs) -> np.ndarray:
        """Logits of a batch of pairs, right-padded to the longest."""
        width = max(len(p[0]) for p in pairs)
        ids = np.full((len(pairs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(pairs), width), dtype=np.int64)
        positions = np.empty((len(pairs), 3), dtype=np.int64)
        for k, (seq, where) in enumerate(pairs):
            ids[k, : len(seq)] = seq
            mask[k, : len(seq)] = 1
            positions[k] = where
        return self._forward(ids, mask, positions)

    def _forward(self, ids, mask, positions) -> np.ndarray:
        """Logits of a batch of pairs (right-padded ``ids``, ``mask``)."""
        torch = self.torch
        ids = torch.from_numpy(ids).to(self.device)
        mask = torch.from_numpy(mask).to(self.device)
        positions = torch.from_numpy(positions).to(self.device)
        model = self.ranker.pretrained_model
        if self.fast_forward:
            from ._fast_deberta import FastForward

            fast = FastForward(model, positions, self.relative_index, self.block_elements)
            with self._lock, fast:
                encs = model(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = hidden.hidden_states[-1]
            rows = torch.arange(len(ids), device=ids.device)[:, None]
            encs = hidden[rows, positions]
        left, right, _ = self.ranker.reduce(encs[:, 0], encs[:, 1], encs[:, 2])
        return (left - right).mean(dim=-1).float().cpu().numpy()

    def _row_by_row(self, collator, sources, left, right, rows, isolated):
        """Encoder-decoder backbones: llm-blender's own ``_full_predict``, one
        source at a time over the candidates its pairs name (an isolated pair:
        over its own two candidates)."""
        torch = self.torch
        by_source: dict[str, list[int]] = {}
        alone = []
        for k, src in enumerate(sources):
            (alone if isolated[k] else by_source.setdefault(src, [])).append(k)
        groups = [(sources[ks[0]], ks, list(rows[sources[ks[0]]])) for ks in by_source.values()]
        groups += [(sources[k], [k], list(dict.fromkeys([left[k], right[k]]))) for k in alone]
        with torch.inference_mode():
            for src, ks, cands in groups:
                with self._lock:  # the tokenizer's truncation state, as in _rows_tokens
                    batch = collator([{"index": 0, "source": src, "candidates": cands}])
                batch = {k: v.to(self.device) for k, v in batch.items() if v is not None}
                matrix = self.ranker._full_predict(**batch)["logits"][0].float().cpu().numpy()
                where = {c: i for i, c in enumerate(cands)}
                idx = np.asarray(ks, dtype=np.intp)
                yield idx, np.array([matrix[where[left[k]], where[right[k]]] for k in ks])


class CandidatePairs:
    """Every ordered pair of distinct candidates of every row, and back to matrices."""

    def __init__(self, sources, left, right, row, uniques, where):
        self.sources, self.left, self.right = sources, left, right
        self.row = row  # the row of each pair
        self.uniques = uniques  # each row's distinct candidates
        self.where = where  # each row's candidates as positions in its uniques

    @classmethod
    def of(cls, sources: list[str], candidates: list[list[str]]) -> CandidatePairs:
        pair_sources, left, right, row, uniques, where = [], [], [], [], [], []
        for r, (src, cands) in enumerate(zip(sources, candidates, strict=True)):
            unique = list(dict.fromkeys(cands))
            uniques.append(unique)
            index = {c: i for i, c in enumerate(unique)}
            where.append([index[c] for c in cands])
            for a in unique:
                for b in unique:
                    if a != b:
                        pair_sources.append(src)
                        left.append(a)
                        right.append(b)
                        row.append(r)
        return cls(pair_sources, left, right, np.asarray(row, dtype=np.intp), uniques, where)

    def matrices(self, logits: np.ndarray) -> list[np.ndarray]:
        """Each row's ``M[i, j]`` over its candidates (in their given order)."""
        out, k = [], 0
        for unique, where in zip(self.uniques, self.where, strict=True):
            m = np.zeros((len(unique), len(unique)), dtype=np.float32)
            for i in range(len(unique)):
                for j in range(len(unique)):
                    if i != j:
                        m[i, j] = logits[k]
                        k += 1
            out.append(m[np.ix_(where, where)])
        return out


def scores_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """llm-blender's score: ``mean_j (M[i, j] - M[j, i])`` in float32."""
    m = np.asarray(matrix, dtype=np.float32)
    return (m - m.T).mean(axis=-1)


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """1 = best; tied scores share the smaller rank (llm-blender's rule)."""
    s = np.asarray(scores)
    return 1 + (s[None, :] > s[:, None]).sum(axis=1)
