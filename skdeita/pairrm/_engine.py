"""Loading PairRM through llm-blender and scoring candidate pairs fast.

llm-blender's ``Blender.rank`` runs one forward pass per ordered candidate pair
over a batch of rows padded to that batch's longest pair. Here the same model
(loaded by llm-blender's own ``loadranker``), the same tokenisation (its own
collator) and the same head (its ranker's ``reduce``) score every ordered pair
of every row; only the scheduling differs: pairs from all rows are sorted by
length and batched with dynamic padding, and identical candidates of a row are
scored once. The comparison matrix and the score formula are llm-blender's.

One deliberate difference: llm-blender gives each candidate
``candidate_max_length + (source_max_length - longest source in the batch) // 2``
tokens, so a row's result can depend on its neighbours in a batch. Here each
row uses its own source length, which is llm-blender with ``batch_size=1``:
results do not depend on batching or row order.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..exceptions import ModelNotFoundError
from ..utils._optional import require
from ..utils._progress import progress_bar
from ._blender_compat import import_llm_blender

DEFAULT_PAIRRM = "llm-blender/PairRM"


def _check_ranker_dir(path: Path, backbone: str | None) -> str | None:
    """Name what a local ranker directory lacks; return the backbone to use."""
    missing = [name for name in ("config.json",) if not (path / name).exists()]
    if not any((path / w).exists() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors or pytorch_model.bin")
    if missing:
        raise ModelNotFoundError(f"Ranker directory {path} is missing {', '.join(missing)}.")
    if backbone is None and (path / "backbone").is_dir():
        backbone = str(path / "backbone")  # an offline copy of the backbone
    if backbone is not None and Path(backbone).is_dir():
        b = Path(backbone)
        need = [] if (b / "config.json").exists() else ["config.json"]
        if not any((b / t).exists() for t in ("tokenizer.json", "spm.model")):
            need.append("tokenizer.json or spm.model")
        if need:
            raise ModelNotFoundError(f"Backbone directory {b} is missing {', '.join(need)}.")
    return backbone


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def load_blender(model: str, *, backbone, device, fp16, source_max_length, candidate_max_length):
    """A ``llm_blender.Blender`` with the ranker loaded by ``loadranker``."""
    llm_blender = import_llm_blender()
    path = Path(model)
    overrides = {
        "source_maxlength": source_max_length,
        "candidate_maxlength": candidate_max_length,
        "fp16": fp16,
    }
    if path.is_dir():
        backbone = _check_ranker_dir(path, backbone)
    else:
        from transformers.utils.hub import TRANSFORMERS_CACHE

        cached = Path(TRANSFORMERS_CACHE) / model
        if cached.is_dir():
            backbone = _check_ranker_dir(cached, backbone)
        elif _offline():
            raise ModelNotFoundError(
                f"PairRM weights {model!r} are not available offline. Download them once "
                f"(`huggingface-cli download {model} --local-dir DIR`, and the backbone "
                "microsoft/deberta-v3-large into DIR/backbone), then pass model=DIR."
            )
    if backbone is not None:
        overrides["model_name"] = str(backbone)
    blender = _quiet(llm_blender.Blender)
    try:
        _quiet(blender.loadranker, str(model), device=device, **overrides)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"Could not load PairRM from {model!r}: {exc}") from exc
    return blender


def _quiet(fn, *args, **kwargs):
    """Call llm-blender without its prints and hub warnings on our users' screens."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # llm-blender's RankerConfig leaves optional fields None.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")
            return fn(*args, **kwargs)
    finally:
        logger.setLevel(level)


class PairScorer:
    """Comparison matrices of candidate pairs with a loaded llm-blender ranker."""

    def __init__(self, blender, *, source_max_length, candidate_max_length, batch_size):
        import copy

        self.torch = require("torch", "PairRMRanker")
        self.ranker = blender.ranker
        self.tokenizer = blender.ranker_tokenizer
        self.device = str(blender.ranker_config.device)
        self.collator = copy.copy(blender.ranker_collator)
        self.collator.source_maxlength = source_max_length
        self.collator.candidate_maxlength = candidate_max_length
        self.batch_size = batch_size
        self.sep_id = self.ranker.sep_token_id
        self.pad_id = self.tokenizer.pad_token_id or 0
        tok = self.tokenizer
        self.cand_id, self.cand1_id, self.cand2_id = (
            tok.cand_prefix_id,
            tok.cand1_prefix_id,
            tok.cand2_prefix_id,
        )
        self.dtype = next(self.ranker.parameters()).dtype

    def _row_tokens(self, source: str, candidates: list[str]):
        """Token ids of a row, exactly as llm-blender's collator makes them."""
        batch = self.collator([{"index": 0, "source": source, "candidates": candidates}])
        src = _upto_last(batch["source_ids"][0].tolist(), self.sep_id)
        cands = [_upto_last(c.tolist(), self.sep_id) for c in batch["candidate_ids"][0]]
        return src, cands

    def matrices(self, sources: list[str], candidates: list[list[str]], progress=None):
        """For each row, the matrix ``M[i, j]``: logit that candidate i beats j.

        Identical candidates share one computation; their own pairs are 0
        (they cancel in the score either way).
        """
        rows, pairs = [], []  # pairs: (row, i, j, token ids, cand1 pos, cand2 pos)
        for r, (src, cands) in enumerate(zip(sources, candidates, strict=True)):
            unique = list(dict.fromkeys(cands))
            rows.append((unique, [unique.index(c) for c in cands]))
            if len(unique) < 2:
                continue
            src_ids, cand_ids = self._row_tokens(src, unique)
            for i, ci in enumerate(cand_ids):
                left = [self.cand1_id if t == self.cand_id else t for t in ci]
                for j, cj in enumerate(cand_ids):
                    if i != j:
                        right = [self.cand2_id if t == self.cand_id else t for t in cj]
                        ids = src_ids + left + right
                        pairs.append((r, i, j, ids, len(src_ids), len(src_ids) + len(left)))
        logits = self._score_pairs(pairs, progress)
        out = [np.zeros((len(u), len(u)), dtype=np.float32) for u, _ in rows]
        for (r, i, j, *_), value in zip(pairs, logits, strict=True):
            out[r][i, j] = value
        return [m[np.ix_(where, where)] for m, (_, where) in zip(out, rows, strict=True)]

    def _score_pairs(self, pairs, progress) -> np.ndarray:
        torch = self.torch
        logits = np.empty(len(pairs), dtype=np.float32)
        order = np.argsort([-len(p[3]) for p in pairs], kind="stable")  # longest first
        with progress_bar(len(pairs), "PairRM pairs", progress) as bar, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                width = len(pairs[idx[0]][3])
                ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for k, p in enumerate(idx):
                    seq = pairs[p][3]
                    ids[k, : len(seq)] = torch.tensor(seq)
                    mask[k, : len(seq)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                hidden = self.ranker.pretrained_model(input_ids=ids, attention_mask=mask)
                hidden = hidden.last_hidden_state
                rows = torch.arange(len(idx), device=self.device)
                src = hidden[rows, 1]  # <|source|> follows [CLS]
                c1 = hidden[rows, torch.tensor([pairs[p][4] + 1 for p in idx], device=self.device)]
                c2 = hidden[rows, torch.tensor([pairs[p][5] + 1 for p in idx], device=self.device)]
                left, right, _ = self.ranker.reduce(src, c1, c2)
                logits[idx] = (left - right).mean(dim=-1).float().cpu().numpy()
                bar.update(len(idx))
        return logits


def _upto_last(ids: list[int], sep_id: int) -> list[int]:
    """Ids up to and including the last separator (drops the padding)."""
    last = len(ids) - 1 - ids[::-1].index(sep_id)
    return ids[: last + 1]


def scores_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """llm-blender's score: ``mean_j (M[i, j] - M[j, i])`` in float32."""
    m = np.asarray(matrix, dtype=np.float32)
    return (m - m.T).mean(axis=-1)


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """1 = best; tied scores share the smaller rank (llm-blender's rule)."""
    s = np.asarray(scores)
    return 1 + (s[None, :] > s[:, None]).sum(axis=1)
