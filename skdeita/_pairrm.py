"""PairRMRanker: rank each row's candidate responses with PairRM."""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import FrameTransformerMixin
from ._deps import resolve_device
from ._pairrm_engine import (
    DEFAULT_PAIRRM,
    PairScorer,
    load_blender,
    ranks_from_scores,
    scores_from_matrix,
)
from ._preference import order_by_ranks
from ._progress import progress_enabled
from ._validation import check_columns, check_dataframe, first_labels, warn_user


class PairRMRanker(FrameTransformerMixin, TransformerMixin, BaseEstimator):
    """Rank each row's candidate responses with the PairRM reward model.

    Every ordered pair of a row's candidates is compared by PairRM
    (llm-blender), each candidate is scored ``mean_j (M[i, j] - M[j, i])`` and
    ranked (1 = best; tied scores share the smaller rank), exactly as
    llm-blender's ``Blender.rank``. Rows may have different numbers of
    candidates.

    Parameters
    ----------
    model : str, default="llm-blender/PairRM"
        Hub name or local directory of an llm-blender ranker
        (``config.json``, ``model.safetensors`` and the backbone).
    backbone : str or None, default=None
        Backbone model name or directory, overriding the ranker's config
        (``microsoft/deberta-v3-large`` for PairRM). None: ``<model>/backbone``
        when that folder exists, else the config's.
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
        Half precision; None means on for CUDA, off elsewhere (as llm-blender).
    batch_size : int, default=16
        Candidate pairs per forward pass.
    source_max_length : int, default=1224
        Token limit of the instruction.
    candidate_max_length : int, default=412
        Token limit of each candidate (plus half of what the source leaves).
    on_invalid : {"raise", "skip"}, default="raise"
        Rows with a missing or empty candidate list, or a missing input: raise
        naming them, or leave them unranked (``ranks`` is None) with a warning.
    show_progress_bar : bool or None, default=None
        tqdm bar over pairs; None shows it only on a terminal.
    store_weights_in_pickle : bool, default=False
        Pickle the loaded model too; by default it reloads on first use.

    Attributes
    ----------
    device_ : str
        Device the ranker runs on.
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
        "backbone": [str, None],
        "input_col": [str],
        "candidates_col": [str],
        "instructions": [str, None],
        "return_scores": ["boolean"],
        "device": [str, None],
        "fp16": ["boolean", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "source_max_length": [Interval(Integral, 8, None, closed="left")],
        "candidate_max_length": [Interval(Integral, 8, None, closed="left")],
        "on_invalid": [StrOptions({"raise", "skip"})],
        "show_progress_bar": ["boolean", None],
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
        batch_size: int = 16,
        source_max_length: int = 1224,
        candidate_max_length: int = 412,
        on_invalid: str = "raise",
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
        self.batch_size = batch_size
        self.source_max_length = source_max_length
        self.candidate_max_length = candidate_max_length
        self.on_invalid = on_invalid
        self.show_progress_bar = show_progress_bar
        self.store_weights_in_pickle = store_weights_in_pickle

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, y=None) -> PairRMRanker:
        """Check the columns and load the ranker (nothing is ranked).

        Parameters
        ----------
        X : DataFrame
            Rows with the input and candidates columns.
        y : None
            Ignored.

        Returns
        -------
        self : PairRMRanker
            The fitted ranker.
        """
        X = check_dataframe(X, type(self).__name__)
        self._rows(X, warn=False)  # input errors before any model work
        self._record_columns(X)
        self.device_ = self._scorer().device
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Add ``ranks``, ``ranked_candidates`` (and ``scores``) to each row.

        Parameters
        ----------
        X : DataFrame
            Rows with the input and candidates columns.

        Returns
        -------
        X_out : DataFrame
            One row per input row, index preserved.
        """
        check_is_fitted(self, "device_")
        X = check_dataframe(X, type(self).__name__)
        valid, sources, candidates = self._rows(X)
        scores = self.score_candidates(sources, candidates)
        out = X.copy()
        ranks = [None] * len(X)
        ranked = [None] * len(X)
        all_scores = [None] * len(X)
        for k, pos in enumerate(valid):
            r = ranks_from_scores(scores[k])
            ranks[pos] = r.tolist()
            ranked[pos] = order_by_ranks(candidates[k], r)
            all_scores[pos] = scores[k].tolist()
        out["ranks"] = pd.Series(ranks, index=X.index, dtype=object)
        out["ranked_candidates"] = pd.Series(ranked, index=X.index, dtype=object)
        if self.return_scores:
            out["scores"] = pd.Series(all_scores, index=X.index, dtype=object)
        return out

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
        prefix = self.instructions or ""
        sources = [prefix + s for s in inputs]
        progress = progress_enabled(self.show_progress_bar)
        matrices = self._scorer().matrices(sources, candidates, progress)
        return [scores_from_matrix(m) for m in matrices]

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
        if not len(inputs) == len(candidates_a) == len(candidates_b):
            raise ValueError("inputs, candidates_a and candidates_b must have the same length.")
        scores = self.score_candidates(
            list(inputs), [[a, b] for a, b in zip(candidates_a, candidates_b, strict=True)]
        )
        logits = np.array([s[0] - s[1] for s in scores], dtype=np.float64)
        return logits if return_logits else 1.0 / (1.0 + np.exp(-logits))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input column names; default: those seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str
            Input columns, then ``ranks``, ``ranked_candidates`` (and ``scores``).
        """
        added = ["ranks", "ranked_candidates"] + (["scores"] if self.return_scores else [])
        return self._names_out(input_features, added)

    def __getstate__(self):
        state = super().__getstate__()
        if not self.store_weights_in_pickle:
            state.pop("_scorer_cache", None)
        return state

    # -- implementation --------------------------------------------------------

    def _scorer(self) -> PairScorer:
        """The loaded ranker; loaded on first use (never in __init__)."""
        scorer = getattr(self, "_scorer_cache", None)
        if scorer is None:
            device = resolve_device(self.device)
            fp16 = device.startswith(("cuda", "mps")) if self.fp16 is None else self.fp16
            blender = load_blender(
                str(self.model),
                backbone=self.backbone,
                device=device,
                fp16=fp16,
                source_max_length=self.source_max_length,
                candidate_max_length=self.candidate_max_length,
            )
            if fp16 and device.startswith("cuda"):
                # llm-blender halves only for the strings "cuda"/"mps", not "cuda:1".
                blender.ranker = blender.ranker.half()
            scorer = PairScorer(
                blender,
                source_max_length=self.source_max_length,
                candidate_max_length=self.candidate_max_length,
                batch_size=self.batch_size,
            )
            self._scorer_cache = scorer
        return scorer

    def _rows(self, X: pd.DataFrame, warn: bool = True):
        """Validated (positions, inputs, candidate lists) of the rankable rows."""
        check_columns(X, {"input_col": self.input_col, "candidates_col": self.candidates_col})
        inputs = X[self.input_col].tolist()
        cands = X[self.candidates_col].tolist()
        bad_input = np.array([not isinstance(s, str) for s in inputs], dtype=bool)
        kinds = [_candidate_problem(c) for c in cands]
        bad_type = np.array([k == "type" for k in kinds], dtype=bool)
        if bad_type.any():
            raise TypeError(
                f"Column {self.candidates_col!r} must hold a list of strings per row; rows "
                f"{first_labels(X.index, bad_type)} hold something else (e.g. a non-string "
                "candidate or a bare string)."
            )
        invalid = bad_input | np.array([k == "empty" for k in kinds], dtype=bool)
        if invalid.any():
            if self.on_invalid == "raise":
                raise ValueError(
                    f"Rows {first_labels(X.index, invalid)} have a missing input or a missing/"
                    f"empty candidate list ({int(invalid.sum())} rows in all); fix them or "
                    "pass on_invalid='skip' to leave them unranked."
                )
            if warn:
                warn_user(
                    f"{int(invalid.sum())} rows are left unranked (missing input or empty "
                    f"candidates): {first_labels(X.index, invalid)}.",
                    UserWarning,
                )
        valid = np.flatnonzero(~invalid)
        return valid, [inputs[i] for i in valid], [list(cands[i]) for i in valid]


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
