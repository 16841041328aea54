"""PairRMRanker: rank each row's candidate responses with PairRM."""

from __future__ import annotations

import json
import os
from numbers import Integral
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..base import BaseModelTransformer, Units
from ..utils._fingerprint import model_digest
from ..utils._units import UnitBatch, unit_keys
from ..utils._validation import check_columns, check_dataframe, check_unicode, first_labels
from ..utils._warnings import warn_user
from ._engine import (
    DEFAULT_PAIRRM,
    CandidatePairs,
    PairScorer,
    ranks_from_scores,
    scores_from_matrix,
)
from ._loading import check_ranker, load_ranker, ranker_dtype, ranker_folder
from ._preference import order_by_ranks


class PairRMRanker(BaseModelTransformer):
    """Rank each row's candidate responses with the PairRM reward model.

    Every ordered pair of a row's candidates is compared by PairRM
    (llm-blender), each candidate is scored ``mean_j (M[i, j] - M[j, i])`` and
    ranked (1 = best; tied scores share the smaller rank), exactly as
    llm-blender's ``Blender.rank`` (with ``batch_size=1``: a row's result never
    depends on the other rows). Rows may have different numbers of
    candidates. Any llm-blender pairwise ranker works: its token limits and
    settings come from its own ``config.json``, and what is loaded never
    depends on the name of the folder it lies in.

    Parameters
    ----------
    model : str, default="llm-blender/PairRM"
        Hub name or local directory of an llm-blender ranker
        (``config.json``, ``model.safetensors`` and the backbone).
    backbone : str or None, default=None
        Backbone model name or directory, overriding the ranker's config
        (``microsoft/deberta-v3-large`` for PairRM). None: ``<model>/backbone``
        when that folder exists, else the config's ``model_name``.
    input_col : str, default="input"
        Column with the instruction of each row.
    candidates_col : str, default="candidates"
        Column with a list of candidate responses per row.
    instructions : str or None, default=None
        Text prepended to every input with no separator (as llm-blender and
        distilabel do).
    return_scores : bool, default=False
        Also add a ``scores`` column (llm-blender's per-candidate scores).
    device : str or None, default=None
        None: CUDA when available, else CPU.
    fp16 : bool or None, default=None
        Half precision; None means llm-blender's rule: the ranker config's
        ``fp16`` (true for PairRM) on CUDA or MPS, float32 elsewhere.
    dtype : {"float32", "float16", "bfloat16"} or None, default=None
        Weights' dtype, overriding ``fp16`` (pass one of the two). Scores are
        float32 either way.
    batch_size : int or None, default=None
        At most this many candidate pairs per forward pass; None: as many as
        ``max_batch_tokens`` allows.
    max_batch_tokens : int or None, default=None
        Padded tokens per forward pass: pairs are sorted by length and
        batched under this budget (8192 on CPU, 32768 on CUDA when None).
        Changes speed and memory, never the results.
    source_max_length : int or None, default=None
        Token limit of the instruction; None: the ranker config's
        ``source_maxlength`` (1224 for PairRM), as llm-blender.
    candidate_max_length : int or None, default=None
        Token limit of each candidate (plus half of what the source leaves);
        None: the config's ``candidate_maxlength`` (412 for PairRM).
    trust_remote_code : bool, default=False
        Let ``transformers`` run code shipped with the backbone. llm-blender
        turns it on for any path containing ``"phi"``; here only this
        parameter does.
    on_invalid : {"raise", "skip"}, default="raise"
        Rows with a missing or empty candidate list, or a missing input: raise
        naming them, or leave them unranked (``ranks`` is None) with a warning.
    cache : str, path, joblib.Memory or None, default=None
        Where to keep each candidate pair's logit across runs: written as
        batches finish, so an interrupted run resumes where it stopped.
    show_progress_bar : bool or None, default=None
        tqdm bar over pairs; None shows it only on a terminal.
    store_weights_in_pickle : bool, default=False
        Pickle the loaded model too; by default it reloads on first use.

    Attributes
    ----------
    device_ : str
        Device the ranker runs on.
    dtype_ : str
        Dtype of its weights.
    source_max_length_, candidate_max_length_ : int
        Token limits in effect (the explicit ones, else the config's).
    backbone_ : str
        Backbone name or directory loaded.
    ranker_config_ : dict
        The settings llm-blender reads from the ranker's ``config.json``
        (``ranker_type``, ``model_type``, ``model_name``, limits, ``n_tasks``,
        ``fp16``, ...), as loaded.
    n_features_in_ : int
        Number of input columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Input column names seen in ``fit``.

    See Also
    --------
    skdeita.preference_pairs : Chosen/rejected pairs from ranked rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import PairRMRanker
    >>> df = pd.DataFrame({"input": ["Hello, how are you?"],
    ...                    "candidates": [["fine", "good", "bad"]]})
    >>> ranker = PairRMRanker(model=tiny_ranker_dir)  # doctest: +SKIP
    >>> ranker.fit_transform(df)[["ranks", "ranked_candidates"]]  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike],
        "backbone": [str, os.PathLike, None],
        "input_col": [str],
        "candidates_col": [str],
        "instructions": [str, None],
        "return_scores": ["boolean"],
        "device": [str, None],
        "fp16": ["boolean", None],
        "dtype": [StrOptions({"float32", "float16", "bfloat16"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_batch_tokens": [Interval(Integral, 1, None, closed="left"), None],
        "source_max_length": [Interval(Integral, 8, None, closed="left"), None],
        "candidate_max_length": [Interval(Integral, 8, None, closed="left"), None],
        "trust_remote_code": ["boolean"],
        "on_invalid": [StrOptions({"raise", "skip"})],
        "show_progress_bar": ["boolean", None],
        "cache": [str, os.PathLike, HasMethods(["cache"]), None],
        "store_weights_in_pickle": ["boolean"],
    }

    def __init__(
        self,
        model: str = DEFAULT_PAIRRM,
        *,
        backbone: str | None = None,
        input_col: str = "input",
        candidates_col: str = "candidates",
        instructions: str | None = None,
        return_scores: bool = False,
        device: str | None = None,
        fp16: bool | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        source_max_length: int | None = None,
        candidate_max_length: int | None = None,
        trust_remote_code: bool = False,
        on_invalid: str = "raise",
        cache=None,
        show_progress_bar: bool | None = None,
        store_weights_in_pickle: bool = False,
    ):
        self.model = model
        self.backbone = backbone
        self.input_col = input_col
        self.candidates_col = candidates_col
        self.instructions = instructions
        self.return_scores = return_scores
        self.device = device
        self.fp16 = fp16
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.source_max_length = source_max_length
        self.candidate_max_length = candidate_max_length
        self.trust_remote_code = trust_remote_code
        self.on_invalid = on_invalid
        self.cache = cache
        self.show_progress_bar = show_progress_bar
        self.store_weights_in_pickle = store_weights_in_pickle

    _cache_kind = "pairrm"
    # Limits and batching are applied per call: they do not reload the model.
    _loading_params = frozenset({"model", "backbone", "fp16", "dtype", "trust_remote_code"})

    def _on_fit(self) -> None:
        model = self._get_model()
        self.device_ = model.device
        self.dtype_ = model.dtype
        self.source_max_length_, self.candidate_max_length_ = model.limits(
            self.source_max_length, self.candidate_max_length
        )
        self.backbone_ = model.loaded.backbone
        self.ranker_config_ = _config_settings(model.config)

    def _check_input(self, X):
        X = check_dataframe(X, type(self).__name__)
        rows = self._rows(X)
        prefix = self.instructions or ""
        pairs = CandidatePairs.of([prefix + s for s in rows.sources], rows.candidates)
        return X, _Prepared(rows, pairs)

    def _input_columns(self) -> dict:
        return {"input_col": self.input_col, "candidates_col": self.candidates_col}

    def _added_columns(self) -> list[str]:
        return ["ranks", "ranked_candidates"] + (["scores"] if self.return_scores else [])

    def score_candidates(self, inputs: list[str], candidates: list[list[str]]) -> list[np.ndarray]:
        """llm-blender's per-candidate scores for each row (higher is better).

        Parameters
        ----------
        inputs : list of str
            Instructions.
        candidates : list of list of str
            Candidates of each row (any number per row, at least one).

        Returns
        -------
        scores : list of ndarray of float32
            One array per row.
        """
        self._check_helper_params()
        inputs = _text_list(inputs, "inputs")
        candidates = _text_list(candidates, "candidates", of="lists of str")
        labels = pd.RangeIndex(len(inputs))
        _check_inputs(inputs, "inputs", labels)
        if len(candidates) != len(inputs):
            raise ValueError(
                f"inputs and candidates must have the same length, got {len(inputs)} and "
                f"{len(candidates)}."
            )
        problems = [_candidate_problem(c) for c in candidates]
        _check_candidates(problems, "candidates", labels, allow_empty=False)
        candidates = [list(c) for c in candidates]
        _check_candidate_text(candidates, "candidates", labels)
        return self._score_rows(inputs, candidates)

    def compare(self, inputs, candidates_a, candidates_b, *, return_logits: bool = False):
        """Probability (or logit) that candidate A is better than candidate B.

        Both orders are compared, as llm-blender's default ``"[A,B]+[B,A]"``
        mode: the logit is ``M[A, B] - M[B, A]``.

        Parameters
        ----------
        inputs, candidates_a, candidates_b : list of str
            One instruction and two candidates per comparison.
        return_logits : bool, default=False
            Return the logits instead of probabilities.

        Returns
        -------
        result : ndarray of float
            One value per comparison; > 0.5 (or > 0) means A is better.
        """
        self._check_helper_params()
        inputs = _text_list(inputs, "inputs")
        candidates_a = _text_list(candidates_a, "candidates_a")
        candidates_b = _text_list(candidates_b, "candidates_b")
        if not len(inputs) == len(candidates_a) == len(candidates_b):
            raise ValueError("inputs, candidates_a and candidates_b must have the same length.")
        labels = pd.RangeIndex(len(inputs))
        for name, texts in (("candidates_a", candidates_a), ("candidates_b", candidates_b)):
            _check_inputs(texts, name, labels)
        scores = self.score_candidates(
            inputs, [[a, b] for a, b in zip(candidates_a, candidates_b, strict=True)]
        )
        logits = np.array([s[0] - s[1] for s in scores], dtype=np.float64)
        return logits if return_logits else 1.0 / (1.0 + np.exp(-logits))

    # -- implementation --------------------------------------------------------

    def _check_helper_params(self) -> None:
        """What ``fit`` checks, for the helpers that need no fit: before any load."""
        self._validate_params()
        self._check_params()

    def _check_params(self) -> None:
        if self.fp16 is not None and self.dtype is not None:
            raise ValueError(
                f"Pass fp16 or dtype, not both (got fp16={self.fp16!r}, dtype={self.dtype!r})."
            )

    def _check_model(self) -> None:
        check_ranker(self.model, self.backbone, owner=type(self).__name__)

    def _model_source(self):
        return ranker_folder(self.model) or self.model

    def _model_dtype(self, device: str) -> str:
        return ranker_dtype(ranker_folder(self.model), device, dtype=self.dtype, fp16=self.fp16)

    def _load_model(self, device: str) -> PairScorer:
        loaded = load_ranker(
            str(self.model),
            backbone=self.backbone,
            device=device,
            dtype=self.dtype,
            fp16=self.fp16,
            trust_remote_code=self.trust_remote_code,
        )
        return PairScorer(loaded)

    def _score_rows(self, inputs: list[str], candidates: list[list[str]]) -> list[np.ndarray]:
        prefix = self.instructions or ""
        pairs = CandidatePairs.of([prefix + s for s in inputs], candidates)
        rows = _Rows(np.arange(len(inputs)), inputs, candidates, pd.RangeIndex(len(inputs)), [])
        results = self._run_units(_Prepared(rows, pairs))
        return [scores_from_matrix(m) for m in pairs.matrices(results.values[:, 0])]

    # -- the compute core's hooks ------------------------------------------------

    def _units(self, prepared: _Prepared) -> Units:
        pairs = prepared.pairs
        keys = unit_keys(
            json.dumps([s, a, b])
            for s, a, b in zip(pairs.sources, pairs.left, pairs.right, strict=True)
        )
        return Units(keys, prepared.rows.valid[pairs.row], len(prepared.rows.labels))

    def _value_shape(self) -> tuple[int, type]:
        return 1, np.float32

    def _cache_identity(self) -> str:
        model = self._get_model()
        source, candidate = model.limits(self.source_max_length, self.candidate_max_length)
        digests = [
            model_digest(p, cache=self.cache) for p in (model.loaded.path, model.loaded.backbone)
        ]
        return (
            f"PairRMRanker|{digests}|{model.dtype}|source={source}|candidate={candidate}|"
            f"fast={model.fast_forward}"
        )

    def _compute_units(self, prepared: _Prepared, positions, isolated):
        pairs = prepared.pairs
        take = positions.tolist()
        for idx, logits in self._get_model().iter_pair_logits(
            [pairs.sources[k] for k in take],
            [pairs.left[k] for k in take],
            [pairs.right[k] for k in take],
            isolated,
            source_max_length=self.source_max_length,
            candidate_max_length=self.candidate_max_length,
            max_batch_tokens=self.max_batch_tokens,
            batch_size=self.batch_size,
        ):
            yield UnitBatch(positions[idx], np.asarray(logits, dtype=np.float32)[:, None])

    def _columns(self, prepared: _Prepared, results) -> dict:
        rows = prepared.rows
        if len(rows.skipped):
            warn_user(
                f"{len(rows.labels) - len(rows.valid)} rows are left unranked (missing input "
                f"or empty candidates): {rows.skipped}.",
                UserWarning,
            )
        n = len(rows.labels)
        matrices = prepared.pairs.matrices(results.values[:, 0])
        ranks, ranked, all_scores = [None] * n, [None] * n, [None] * n
        for k, pos in enumerate(rows.valid):
            scores = scores_from_matrix(matrices[k])
            r = ranks_from_scores(scores)
            ranks[pos] = r.tolist()
            ranked[pos] = order_by_ranks(rows.candidates[k], r)
            all_scores[pos] = scores.tolist()
        out = {"ranks": ranks, "ranked_candidates": ranked}
        if self.return_scores:
            out["scores"] = all_scores
        return out

    def _rows(self, X: pd.DataFrame) -> _Rows:
        """Validated rankable rows; raises before any model work."""
        check_columns(X, {"input_col": self.input_col, "candidates_col": self.candidates_col})
        inputs = X[self.input_col].tolist()
        cands = X[self.candidates_col].tolist()
        problems = [_candidate_problem(c) for c in cands]
        _check_candidates(problems, f"Column {self.candidates_col!r}", X.index, allow_empty=True)
        bad_input = np.array([not isinstance(s, str) for s in inputs], dtype=bool)
        invalid = bad_input | np.array([k == "empty" for k in problems], dtype=bool)
        if invalid.any() and self.on_invalid == "raise":
            raise ValueError(
                f"Rows {first_labels(X.index, invalid)} have a missing input or a missing/"
                f"empty candidate list ({int(invalid.sum())} rows in all); fix them or "
                "pass on_invalid='skip' to leave them unranked."
            )
        valid = np.flatnonzero(~invalid)
        sources = [inputs[i] for i in valid]
        candidates = [list(cands[i]) for i in valid]
        check_unicode(sources, f"Column {self.input_col!r}", X.index[valid])
        _check_candidate_text(candidates, f"Column {self.candidates_col!r}", X.index[valid])
        return _Rows(valid, sources, candidates, X.index, first_labels(X.index, invalid))


class _Rows(NamedTuple):
    valid: np.ndarray  # positions of the rankable rows
    sources: list[str]
    candidates: list[list[str]]
    labels: pd.Index  # every row's label
    skipped: list  # first labels of the rows left unranked


class _Prepared(NamedTuple):
    rows: _Rows
    pairs: CandidatePairs  # every ordered pair of distinct candidates: the units


# RankerConfig fields that say where a ranker was loaded from, not how it ranks.
_LOCATION_FIELDS = ("cache_dir", "load_checkpoint", "device")


def _config_settings(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _LOCATION_FIELDS}


def _text_list(value, name: str, of: str = "str") -> list:
    """``value`` as a list, refusing a bare string (a list of its characters)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of {of}, got {type(value).__name__}.")
    return list(value)


def _check_inputs(texts: list, name: str, labels) -> None:
    bad = np.array([not isinstance(s, str) for s in texts], dtype=bool)
    if bad.any():
        raise TypeError(f"{name} must be strings; rows {first_labels(labels, bad)} are not.")
    check_unicode(texts, name, labels)


def _check_candidates(problems: list, name: str, labels, *, allow_empty: bool) -> None:
    bad_type = np.array([k == "type" for k in problems], dtype=bool)
    if bad_type.any():
        raise TypeError(
            f"{name} must hold a list of strings per row; rows "
            f"{first_labels(labels, bad_type)} hold something else (e.g. a non-string "
            "candidate or a bare string)."
        )
    empty = np.array([k == "empty" for k in problems], dtype=bool)
    if not allow_empty and empty.any():
        raise ValueError(f"{name} has no candidates at rows {first_labels(labels, empty)}.")


def _check_candidate_text(candidates: list[list[str]], name: str, labels) -> None:
    for label, cands in zip(labels, candidates, strict=True):
        check_unicode(cands, f"{name} (row {label!r})", pd.RangeIndex(len(cands)))


def _candidate_problem(cell) -> str | None:
    """None when ``cell`` is a non-empty list of strings; else what is wrong."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return "empty"
    if isinstance(cell, str) or not isinstance(cell, list | tuple | np.ndarray):
        return "type"
    if len(cell) == 0:
        return "empty"
    if any(c is None or (isinstance(c, float) and c != c) for c in cell):
        return "type"
    return None if all(isinstance(c, str) for c in cell) else "type"
