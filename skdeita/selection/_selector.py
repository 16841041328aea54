"""DeitaSelector: score-first, diversity-aware selection over a DataFrame.

The selection is one sequence, whatever the input (:meth:`DeitaSelector._run`):

1. check the parameters (``_parameter_constraints``, then ``_check_params``);
2. check the columns, on the pandas frame or on the Dask DataFrame's
   ``_meta``, and compute the scores: on the frame directly, or by the Dask
   scores pass (one task per partition); missing scores raise or warn here;
3. walk a row source (:mod:`._walk`): rows read from memory, or streamed
   from the workers in walk order;
4. one result object (:class:`~._output.Selection`), from which one method
   records the fitted attributes and one builds the output (applied per
   partition on Dask).

Only the row supplier differs (:class:`~._rows.InMemoryRows`, or
:class:`~._distributed.ClusterRows` on Dask): it supplies rows and runs
tasks, and states no rule, warning or attribute of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ..base import FrameTransformerMixin
from ..exceptions import BudgetNotReachedWarning
from ..utils._dask import is_dask_collection
from ..utils._validation import check_columns, check_dataframe, check_embedding_rows
from ..utils._warnings import warn_user
from ._coverage import quality_coverage
from ._distances import needs_direction, resolve_metric
from ._distributed import ClusterRows
from ._greedy import (
    SELECTION_CONSTRAINTS,
    check_budget,
    check_threshold,
    reference_matrix,
    resolve_budget,
)
from ._output import Selection, added_columns
from ._rows import InMemoryRows, ScoreReport, Spec
from ._walk import NO_ROW, Distances, Nearest, walk


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
            Rows with the embedding and score columns (pandas or Dask).
        y : None
            Ignored.

        Returns
        -------
        self : DeitaSelector
            The fitted selector.
        """
        self._record(*self._run(X, with_output=False))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """Fit on ``X`` and return its selection (one pass, same as fit+transform).

        Parameters
        ----------
        X : DataFrame
            Rows with the embedding and score columns (pandas or Dask).
        y : None
            Ignored.
        **fit_params : dict
            Unused; accepted for API compatibility.

        Returns
        -------
        X_out : DataFrame
            See :meth:`transform`.
        """
        rows, selection = self._run(X)
        self._record(rows, selection)
        return self._build_output(rows, selection)

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
        return self._build_output(*self._run(X))

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
        check_is_fitted(self, "selected_index_")
        check_dataframe(X, type(self).__name__)  # coverage compares every row with the kept
        rows, selection = self._run(X, with_output=False)
        return quality_coverage(
            rows.cells,
            rows.scores.scores,
            selection.selected,
            distance_metric=self.distance_metric,
            normalize_embeddings=self.normalize_embeddings,
        )

    # -- the selection sequence ----------------------------------------------------

    def _run(self, X, with_output: bool = True):
        """Parameters, columns and scores, then the walk: ``(rows, selection)``."""
        self._check_params()
        _, rows = self._check_input(X)
        return rows, self._select(rows, with_output)

    def _select(self, rows, with_output: bool = True) -> Selection:
        """Walk the rows the supplier serves; one result, on pandas or Dask.

        What the output shows is recorded only when it is built: every visited
        row's distance and nearest row for ``output="annotate"``, the kept
        rows' distances otherwise.
        """
        metric = resolve_metric(self.distance_metric)
        direction = needs_direction(metric, self.normalize_embeddings)
        reference = self._reference_rows(direction)
        budget = resolve_budget(self.data_budget, rows.n)
        unit_norm = bool(self.normalize_embeddings)
        order = rows.walk_order()
        source = rows.source(order, unit_norm, budget)
        ref = reference_matrix(reference, source, direction, False)
        threshold = float(self.diversity_threshold)
        # A subset shows only the kept rows' distances: 8 bytes a visited row saved.
        annotate = with_output and self.output == "annotate"
        kept_only = not annotate
        distances = Distances(order, threshold if kept_only else None)
        nearest = Nearest(order) if annotate else None
        dataset = self.neighbors == "dataset"
        others = rows.nearest_others(metric, unit_norm, self.block_size) if dataset else None
        try:
            selected, n_visited = walk(
                source, ref, order, budget, threshold, metric, unit_norm, self.neighbors,
                int(self.block_size), distances, self.show_progress_bar, others, nearest,
            )  # fmt: skip
        finally:
            rows.close()
        selected = np.asarray(selected, dtype=np.intp)
        selection = Selection(
            n_rows=rows.n,
            order=order,
            selected=selected,
            distances=distances.by_rank(len(selected)),
            kept_only=kept_only,
            n_visited=n_visited,
            budget=budget,
            budget_reached=len(selected) >= budget,
            nearest=None if nearest is None else nearest.by_rank(),
        )
        if not selection.budget_reached and self.data_budget is not None:
            kept = f"DeitaSelector kept {len(selected)} of {rows.n} rows, fewer than the budget"
            if budget <= rows.n:
                why = (
                    f" of {budget}: only these passed diversity_threshold="
                    f"{self.diversity_threshold}. Lower the threshold or the budget to get more."
                )
            else:  # no threshold would fill it: say so, not "lower the threshold"
                why = f": the pool has {rows.n} rows, fewer than data_budget={self.data_budget}"
                if len(selected) < rows.n:
                    why += f", and only these passed diversity_threshold={self.diversity_threshold}"
                why += "."
            warn_user(kept + why, BudgetNotReachedWarning)
        return selection

    def _build_output(self, rows, selection: Selection):
        """The output: the selection's columns, with the labels of the blocking rows."""
        if self.output == "annotate":
            selection = self._attributed(rows, selection)
        return rows.output(selection, self.output)

    def _attributed(self, rows, selection: Selection) -> Selection:
        """``selection`` with, for each visited row, the label of the row that blocked
        it (None when kept); a reference row's label goes to its own column."""
        codes = selection.nearest
        blocked = ~selection.kept_by_rank()
        by = np.full(len(codes), None, dtype=object)
        inputs = blocked & (codes >= 0)
        by[inputs] = rows.labels(codes[inputs]).to_numpy(dtype=object)
        by_ref = None
        if self.reference is not None:
            ref = blocked & (codes < 0) & (codes != NO_ROW)
            by_ref = np.full(len(codes), None, dtype=object)
            by_ref[ref] = self._reference_labels()[-(codes[ref] + 1)]
        return replace(selection, blocked_by=by, blocked_by_reference=by_ref)

    def _reference_labels(self) -> np.ndarray:
        """The reference rows' index labels (positions, for an array)."""
        if isinstance(self.reference, pd.DataFrame):
            return self.reference.index.to_numpy(dtype=object)
        return np.arange(len(self.reference)).astype(object)

    def _record(self, rows, selection: Selection) -> None:
        """The fitted attributes, from the one result object."""
        self._record_columns(rows.frame)
        self.selected_index_ = rows.labels(selection.selected)
        self.n_selected_ = len(selection.selected)
        self.budget_ = selection.budget
        # With no budget there is nothing to miss.
        self.budget_reached_ = selection.budget_reached or self.data_budget is None
        self.n_visited_ = selection.n_visited

    # -- the estimator contract (skdeita.base) ---------------------------------------

    def _check_params(self) -> None:
        check_budget(self.data_budget)
        check_threshold(self.diversity_threshold)
        if self.instruction_score_col is None and self.response_score_col is None:
            raise ValueError(
                "At least one of instruction_score_col and response_score_col must be set."
            )

    def _input_columns(self) -> dict:
        return {
            "embedding_col": self.embedding_col,
            "instruction_score_col": self.instruction_score_col,
            "response_score_col": self.response_score_col,
        }

    def _added_columns(self) -> list[str]:
        return added_columns(self.output, reference=self.reference is not None)

    def _check_input(self, X):
        """``(frame, rows)``: the columns checked (on a Dask DataFrame, on its
        ``_meta``) and the scores computed; ``rows`` serves them to the walk."""
        spec = self._spec()
        name = type(self).__name__
        if is_dask_collection(X):
            rows = ClusterRows(X, spec, name, dataset=self.neighbors == "dataset")
        else:
            rows = InMemoryRows(check_dataframe(X, name), spec)
        check_columns(rows.frame, self._input_columns())
        self._check_missing(rows.score())
        return rows.frame, rows

    def _check_partial_input(self, X) -> None:
        """In a pipeline: the scores now when the embeddings come from an earlier step."""
        frame = check_dataframe(X, type(self).__name__)
        scores = [self.instruction_score_col, self.response_score_col]
        if not all(c is None or c in frame.columns for c in scores):
            return  # an earlier step adds them: checked when it has
        if self.embedding_col in frame.columns:
            self._check_input(frame)
        else:
            self._check_missing(InMemoryRows(frame, self._spec()).score())

    # -- implementation --------------------------------------------------------

    def _spec(self) -> Spec:
        metric = resolve_metric(self.distance_metric)
        return Spec(
            self.embedding_col,
            self.instruction_score_col,
            self.response_score_col,
            needs_direction(metric, self.normalize_embeddings),
        )

    def _check_missing(self, report: ScoreReport) -> None:
        """Rows without a score raise or are left out with a warning; rows with one
        score of two are counted in a warning."""
        if report.n_missing:
            cols = [c for c in (self.instruction_score_col, self.response_score_col) if c]
            if self.missing_scores == "raise":
                raise ValueError(
                    f"Rows {report.missing_labels} have no score in {cols} "
                    f"({report.n_missing} rows in all). Fill them, or pass "
                    "missing_scores='drop' to leave them out of the selection."
                )
            warn_user(
                f"{report.n_missing} rows have no score in {cols} and are left out "
                f"of the selection (first: {report.missing_labels}).",
                UserWarning,
            )
        if report.n_fallback:
            warn_user(
                f"{report.n_fallback} rows have only one of the two scores; their "
                "deita_score is that score alone (see deita_score_computed_with).",
                UserWarning,
            )

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
