"""DeitaSelector: score-first, diversity-aware selection over a DataFrame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ..base import FrameTransformerMixin
from ..exceptions import BudgetNotReachedWarning
from ..utils._dask import is_dask_collection
from ..utils._validation import (
    check_columns,
    check_dataframe,
    check_embedding_rows,
    first_labels,
)
from ..utils._warnings import warn_user
from ._distances import needs_direction, resolve_metric
from ._greedy import (
    SELECTION_CONSTRAINTS,
    SelectionResult,
    check_threshold,
    deita_select,
    resolve_budget,
)
from ._scores import compute_deita_scores

SCORE_COLUMNS = ["deita_score", "deita_score_computed_with", "nearest_neighbor_distance"]
ANNOTATE_COLUMNS = ["deita_selected", "deita_rank"]


class DeitaSelector(FrameTransformerMixin, TransformerMixin, BaseEstimator):
    """Select a high-quality, diverse subset of rows, DEITA style.

    Rows are scored ``deita_score = instruction score x response score``,
    visited from the best score down (ties keep input order), and kept when
    their distance to the nearest reference row is at least
    ``diversity_threshold``, until ``data_budget`` rows are kept.

    Parameters
    ----------
    data_budget : int, float or None, default=None
        Rows to keep: an int >= 1, or a float in (0, 1] meaning that fraction
        of the rows given (rounded up), so folds of different sizes compare.
        None keeps every row that passes the diversity check.
    diversity_threshold : float, default=0.1
        A *distance*: a row is kept when its distance to the nearest reference
        row is >= this. With cosine distance, 0.1 is the DEITA paper's cosine
        similarity threshold of 0.9.
    distance_metric : str or callable, default="cosine"
        ``"cosine"``, ``"euclidean"``, ``"manhattan"`` or any metric name of
        :func:`scipy.spatial.distance.cdist` that does not depend on the other
        rows.
    normalize_embeddings : bool, default=True
        Scale each embedding to unit L2 norm first.
    neighbors : {"selected", "dataset"}, default="selected"
        Reference rows: the rows already kept (the paper) or every other row
        of the input (distilabel's ``DeitaFiltering``).
    output : {"subset", "annotate"}, default="subset"
        ``"subset"`` returns the kept rows in selection order with their
        original index labels; ``"annotate"`` returns every row in input order
        with ``deita_selected`` and ``deita_rank`` added.
    embedding_col : str, default="embedding"
        Column of 1-D vectors of equal length.
    instruction_score_col : str or None, default="evol_instruction_score"
        Complexity score column (None: not used).
    response_score_col : str or None, default="evol_response_score"
        Quality score column (None: not used).
    missing_scores : {"raise", "drop"}, default="raise"
        What to do with rows whose scores are all missing: raise an error that
        names them, or leave them out of the selection with a warning.
    block_size : int, default=1024
        Candidates per distance computation (speed/memory only, never the
        result).
    show_progress_bar : bool or None, default=None
        tqdm progress bar; None shows it only on a terminal.
    reference : array-like of shape (n_ref, n_dims), DataFrame or None, default=None
        Embeddings of rows already in a curated set (or a DataFrame with the
        ``embedding_col`` column). A row is kept only if it is at least
        ``diversity_threshold`` from every reference row as well as from the
        rows kept before it; reference rows are not returned and do not count
        toward the budget. See :ref:`incremental selection <incremental>`.

    Attributes
    ----------
    selected_index_ : pandas.Index
        Index labels of the rows kept by ``fit``, in selection order.
    n_selected_ : int
        Number of rows kept by ``fit``.
    budget_ : int
        Budget in rows applied by ``fit`` (all rows when ``data_budget`` is None).
    budget_reached_ : bool
        Whether ``fit`` kept ``budget_`` rows.
    n_visited_ : int
        Rows examined by ``fit`` before it stopped.
    n_features_in_ : int
        Number of columns of the DataFrame seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit``.

    See Also
    --------
    skdeita.deita_select : The numerical core, on arrays.
    skdeita.EmbeddingTransformer : Adds the embedding column.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import DeitaSelector
    >>> df = pd.DataFrame({
    ...     "embedding": [[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]],
    ...     "evol_instruction_score": [3.0, 2.5, 1.0],
    ...     "evol_response_score": [2.0, 2.0, 2.0],
    ... })
    >>> out = DeitaSelector(data_budget=2).fit_transform(df)
    >>> out.index.tolist()
    [0, 2]
    >>> out["deita_score"].tolist()
    [6.0, 2.0]
    """

    _parameter_constraints: dict = {
        **SELECTION_CONSTRAINTS,
        "output": [StrOptions({"subset", "annotate"})],
        "embedding_col": [str],
        "instruction_score_col": [str, None],
        "response_score_col": [str, None],
        "missing_scores": [StrOptions({"raise", "drop"})],
        "reference": ["array-like", None],
    }

    def __init__(
        self,
        data_budget: int | float | None = None,
        *,
        diversity_threshold: float = 0.1,
        distance_metric: str | Callable = "cosine",
        normalize_embeddings: bool = True,
        neighbors: str = "selected",
        output: str = "subset",
        embedding_col: str = "embedding",
        instruction_score_col: str | None = "evol_instruction_score",
        response_score_col: str | None = "evol_response_score",
        missing_scores: str = "raise",
        block_size: int = 1024,
        show_progress_bar: bool | None = None,
        reference=None,
    ):
        self.data_budget = data_budget
        self.diversity_threshold = diversity_threshold
        self.distance_metric = distance_metric
        self.normalize_embeddings = normalize_embeddings
        self.neighbors = neighbors
        self.output = output
        self.embedding_col = embedding_col
        self.instruction_score_col = instruction_score_col
        self.response_score_col = response_score_col
        self.missing_scores = missing_scores
        self.block_size = block_size
        self.show_progress_bar = show_progress_bar
        self.reference = reference

    # -- sklearn API ---------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, y=None) -> DeitaSelector:
        """Validate ``X`` and record the selection made on it.

        Parameters
        ----------
        X : DataFrame
            Rows with the embedding and score columns.
        y : None
            Ignored.

        Returns
        -------
        self : DeitaSelector
            The fitted selector.
        """
        if is_dask_collection(X):
            from . import _distributed

            return _distributed.fit(self, X)
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """Fit on ``X`` and return its selection (one pass, same as fit+transform).

        Parameters
        ----------
        X : DataFrame
            Rows with the embedding and score columns.
        y : None
            Ignored.
        **fit_params : dict
            Unused; accepted for API compatibility.

        Returns
        -------
        X_out : DataFrame
            See :meth:`transform`.
        """
        if is_dask_collection(X):
            from . import _distributed

            return _distributed.fit_transform(self, X)
        return self._build_output(*self._fit(X))

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Select from ``X`` with the fitted parameters.

        Parameters
        ----------
        X : DataFrame
            Rows with the embedding and score columns.

        Returns
        -------
        X_out : DataFrame
            ``output="subset"``: the kept rows in selection order, original
            index labels, plus ``deita_score``, ``deita_score_computed_with`` and
            ``nearest_neighbor_distance``. ``output="annotate"``: every row in
            input order, plus those and ``deita_selected``, ``deita_rank``.
            A Dask DataFrame is selected exactly as its pandas equivalent
            (``X.compute()``) would be, without gathering its embeddings on
            the client, and gives a lazy Dask DataFrame (see
            :doc:`/scale`).
        """
        check_is_fitted(self, "selected_index_")
        if is_dask_collection(X):
            from . import _distributed

            return _distributed.transform(self, X)
        return self._build_output(*self._select(X))

    def score(self, X: pd.DataFrame, y=None) -> float:
        """Quality-weighted coverage of ``X`` by the rows selected from it.

        Each row of ``X`` is credited with its best similarity to a kept row,
        weighted by that kept row's relative score (see
        :func:`skdeita.metrics.quality_coverage`). Higher is better, at most 1.
        A threshold so low that the kept rows are near-duplicates leaves much
        of ``X`` uncovered; one so high that the budget is not filled, or is
        filled with low-score rows, loses coverage or quality weight.

        With ``reference`` set, the selection is made against the reference
        (as in ``transform``), but coverage counts the rows kept from ``X``
        only: the reference rows have no scores to weight them by. On a Dask
        DataFrame, compute it first (``X.compute()``) if it fits in memory.

        Parameters
        ----------
        X : DataFrame
            Rows with the embedding and score columns.
        y : None
            Ignored.

        Returns
        -------
        score : float
            The quality-weighted coverage, in [0, 1] for cosine distance.
        """
        from ..metrics import quality_coverage

        check_is_fitted(self, "selected_index_")
        X, cells, scores, result = self._select(X)
        return quality_coverage(
            cells,
            scores.scores,
            result.selected,
            distance_metric=self.distance_metric,
            normalize_embeddings=self.normalize_embeddings,
        )

    # -- implementation --------------------------------------------------------

    def _fit(self, X):
        X, cells, scores, result = self._select(X)
        self._record_columns(X)
        self.selected_index_ = X.index[result.selected]
        self.n_selected_ = len(result.selected)
        self.budget_ = result.budget
        # With no budget there is nothing to miss.
        self.budget_reached_ = result.budget_reached or self.data_budget is None
        self.n_visited_ = result.n_visited
        return X, cells, scores, result

    def _input_columns(self) -> dict:
        return {
            "embedding_col": self.embedding_col,
            "instruction_score_col": self.instruction_score_col,
            "response_score_col": self.response_score_col,
        }

    def _added_columns(self) -> list[str]:
        return SCORE_COLUMNS + (ANNOTATE_COLUMNS if self.output == "annotate" else [])

    def _check_scores(self, X):
        """Validate the parameters and score columns; return the scores."""
        X = check_dataframe(X, type(self).__name__)
        resolve_budget(self.data_budget, len(X))
        check_threshold(self.diversity_threshold)
        if self.instruction_score_col is None and self.response_score_col is None:
            raise ValueError(
                "At least one of instruction_score_col and response_score_col must be set."
            )
        columns = self._input_columns()
        del columns["embedding_col"]
        check_columns(X, columns)
        scores = compute_deita_scores(
            X[self.instruction_score_col] if self.instruction_score_col else None,
            X[self.response_score_col] if self.response_score_col else None,
        )
        self._warn_or_raise_missing(X, scores)
        return scores

    def _check_input(self, X):
        """Validate ``X`` and compute its scores; nothing is selected yet."""
        scores = self._check_scores(X)
        check_columns(X, {"embedding_col": self.embedding_col})
        metric = resolve_metric(self.distance_metric)
        direction = needs_direction(metric, self.normalize_embeddings)
        cells = check_embedding_rows(
            X[self.embedding_col],
            need_direction=direction,
            name=f"Column {self.embedding_col!r}",
            labels=X.index,
        )
        reference = self._reference_rows(direction)
        return X, cells, scores, reference

    def _select(self, X):
        """Validate, score and select: everything but building the output."""
        X, cells, scores, reference = self._check_input(X)
        metric = resolve_metric(self.distance_metric)
        candidates = np.flatnonzero(~scores.missing)
        result = deita_select(
            [cells[i] for i in candidates] if len(candidates) < len(cells) else cells,
            scores.scores[candidates],
            data_budget=resolve_budget(self.data_budget, len(X)),
            diversity_threshold=self.diversity_threshold,
            distance_metric=metric,
            normalize_embeddings=self.normalize_embeddings,
            neighbors=self.neighbors,
            block_size=self.block_size,
            show_progress_bar=self.show_progress_bar,
            reference=reference,
            check_input=False,
        )
        result = _to_input_positions(result, candidates, len(X))
        if not result.budget_reached and self.data_budget is not None:
            warn_user(
                f"DeitaSelector kept {len(result.selected)} of {len(X)} rows, fewer than "
                f"the budget of {result.budget}: only these passed "
                f"diversity_threshold={self.diversity_threshold}. Lower the threshold "
                "or the budget to get more.",
                BudgetNotReachedWarning,
            )
        return X, cells, scores, result

    def _reference_rows(self, direction: bool):
        """The reference embeddings, validated like the input's."""
        ref = self.reference
        if ref is None:
            return None
        if isinstance(ref, pd.DataFrame):
            if self.embedding_col not in ref.columns:
                raise ValueError(
                    f"reference has no column {self.embedding_col!r} (embedding_col); its "
                    f"columns: {[str(c) for c in ref.columns]}. Pass the curated rows' "
                    "embeddings, or a DataFrame that holds them in embedding_col."
                )
            return check_embedding_rows(
                ref[self.embedding_col],
                need_direction=direction,
                name=f"reference column {self.embedding_col!r}",
                labels=ref.index,
            )
        return check_embedding_rows(ref, need_direction=direction, name="reference")

    def _warn_or_raise_missing(self, X, scores) -> None:
        missing = scores.missing
        if missing.any():
            cols = [c for c in (self.instruction_score_col, self.response_score_col) if c]
            if self.missing_scores == "raise":
                raise ValueError(
                    f"Rows {first_labels(X.index, missing)} have no score in {cols} "
                    f"({int(missing.sum())} rows in all). Fill them, or pass "
                    "missing_scores='drop' to leave them out of the selection."
                )
            warn_user(
                f"{int(missing.sum())} rows have no score in {cols} and are left out "
                f"of the selection (first: {first_labels(X.index, missing)}).",
                UserWarning,
            )
        if scores.n_fallback:
            warn_user(
                f"{scores.n_fallback} rows have only one of the two scores; their "
                "deita_score is that score alone (see deita_score_computed_with).",
                UserWarning,
            )

    def _build_output(self, X, cells, scores, result: SelectionResult) -> pd.DataFrame:
        added = {
            "deita_score": scores.scores,
            "deita_score_computed_with": pd.Series(scores.computed_with, dtype=object).values,
            "nearest_neighbor_distance": result.distances,
        }
        if self.output == "subset":
            out = X.iloc[result.selected].copy()
            for name, values in added.items():
                out[name] = values[result.selected]
            return out
        out = X.copy()
        for name, values in added.items():
            out[name] = values
        rank = np.zeros(len(X), dtype=np.int64)
        rank[result.selected] = np.arange(1, len(result.selected) + 1)
        out["deita_selected"] = rank > 0
        out["deita_rank"] = pd.array([r if r else pd.NA for r in rank.tolist()], dtype="Int64")
        return out


def _to_input_positions(result: SelectionResult, candidates, n) -> SelectionResult:
    """Map a selection made on the scored subset back to positions in X."""
    if len(candidates) == n:
        return result
    distances = np.full(n, np.nan)
    distances[candidates] = result.distances
    return SelectionResult(
        selected=candidates[result.selected],
        distances=distances,
        order=candidates[result.order],
        n_visited=result.n_visited,
        budget=result.budget,
        budget_reached=result.budget_reached,
    )
