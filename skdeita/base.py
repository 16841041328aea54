"""The skeleton every skdeita estimator is built on: DataFrame in, DataFrame out.

- :class:`FrameTransformerMixin`: the estimator contract (the hooks every
  skdeita estimator implements, declared and documented once, below), tags,
  input-column bookkeeping and output names.
- :class:`BaseModelTransformer`: a transformer backed by a model (an
  embedder, a ranker, a scoring LM). It fixes the order of work so that each
  subclass only states its own columns and its own batch computation:

  1. parameters are validated (``_parameter_constraints``, ``_check_params``);
  2. the input is checked (``_check_input``: columns, values, row labels),
     *before* any model loads;
  3. the input's units go through the compute core
     (:mod:`skdeita.utils._units`): each distinct unit once, the ``cache=``
     folder's values reused, the rest computed batch by batch and written
     to the cache as each batch ends;
  4. the model is loaded only when a unit must be computed, once per process
     (held by :mod:`skdeita.utils._model_cache`, so that it can be released;
     ``_model`` reads it), and left out of pickles unless
     ``store_weights_in_pickle=True``;
  5. the added columns go on a copy of the caller's frame, never on the
     frame itself.

:class:`~skdeita.DeitaSelector` has no model: it implements the same contract
around its own sequence (:mod:`skdeita.selection._selector`).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .utils._dask import (
    fit_model_transformer,
    is_dask_collection,
    transform_model_transformer,
)
from .utils._disk_cache import ResultStore
from .utils._loading import check_model, log_model_memory
from .utils._model_cache import cached_model, loaded_model
from .utils._optional import resolve_device
from .utils._progress import progress_enabled
from .utils._units import UnitResults, compute_units
from .utils._validation import check_device

logger = logging.getLogger("skdeita")


class FrameTransformerMixin:
    """The estimator contract, tags, input-column bookkeeping and output names.

    Every skdeita estimator implements these hooks; each name means one
    thing. :func:`skdeita.pipeline.check_steps` (``DeitaPipeline`` and the
    command line) and the shared tests use them, and nothing else:

    ``_check_params() -> None``
        The rules on parameters that ``_parameter_constraints`` cannot state
        (between two parameters, or a value the constraint admits, such as an
        infinite threshold). Raises naming the parameters; reads no input,
        loads no model.
    ``_input_columns() -> dict``
        ``{parameter: column}`` for each column read (None: not used).
    ``_added_columns() -> list``
        The columns added, in order.
    ``_check_input(X) -> (frame, prepared)``
        Checks the input (type, columns, values, row labels) and returns the
        pandas frame the output is built on (for a Dask DataFrame, its
        ``_meta``) and what the computation needs. Raises before any model
        loads.
    ``_check_model() -> None``
        Finds every model the estimator will load (a local folder holding
        its files, or a hub name, in the local cache when offline), loading
        nothing; raises naming the model. Default: no model.
    ``_check_partial_input(X) -> None``
        In a pipeline, what ``X`` already holds of the input, checked now;
        columns an earlier step adds are checked when that step has run.
        Default: ``_check_input`` when ``X`` has every input column.

    The computation and the output are each family's own: the compute core
    (units, ``_compute_units``, ``_columns``) and ``_output(frame, columns)``
    for :class:`BaseModelTransformer`; the selection's walk and row
    suppliers for :class:`~skdeita.DeitaSelector`.
    """

    def _check_params(self) -> None:
        """Rules between parameters (default: none beyond the constraints)."""

    def _input_columns(self) -> dict:
        """``{parameter: column}`` read from the input."""
        raise NotImplementedError

    def _added_columns(self) -> list[str]:
        """The columns added to the input, in order."""
        raise NotImplementedError

    def _check_input(self, X) -> tuple[pd.DataFrame, object]:
        """``(frame, prepared)``: the checked frame and what the computation needs.

        Must raise on any bad input without loading a model.
        """
        raise NotImplementedError

    def _check_model(self) -> None:
        """Find the model without loading it, or raise saying what is wrong
        (default: no model)."""

    def _check_partial_input(self, X) -> None:
        """Check what ``X`` holds of the input (a pipeline's earlier steps add the rest)."""
        columns = self._input_columns().values()
        if all(c is None or c in X.columns for c in columns):
            self._check_input(X)

    def _record_columns(self, X: pd.DataFrame) -> None:
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output column names.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input column names; default: those seen in ``fit``.

        Returns
        -------
        feature_names_out : ndarray of str
            Input columns followed by the columns this estimator adds.
        """
        check_is_fitted(self, "feature_names_in_")
        names = list(self.feature_names_in_ if input_features is None else input_features)
        added = self._added_columns()
        return np.asarray(names + [c for c in added if c not in names], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A DataFrame with named text/vector/score columns, not a numeric 2-D
        # array: scikit-learn's data checks (which feed numeric arrays) do not
        # apply. Deterministic, needs fit, no target.
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.target_tags.required = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags


class BaseModelTransformer(FrameTransformerMixin, TransformerMixin, BaseEstimator):
    """Base class of the model-backed transformers (not for direct use).

    Subclasses implement the contract of :class:`FrameTransformerMixin`
    (``_check_input``'s ``prepared`` is what the computation needs), turning
    their checked input into *units* (one model input each: a prompt, a
    text, a pair of candidates), and state:

    - ``_units(prepared)`` -> :class:`Units`: each unit's key (everything
      that goes into the model for it) and row;
    - ``_compute_units(prepared, positions, isolated)``: yields
      :class:`~skdeita.utils._units.UnitBatch` es of values for the units at
      ``positions`` (it calls ``_get_model()``, so a call whose units all
      come from the cache loads nothing);
    - ``_columns(prepared, results)`` -> ``{column: values}``, one value per
      row (and the failure policy);
    - ``_value_shape()`` -> ``(width, dtype)`` of one unit's value;
    - ``_cache_identity()``: every setting that changes a value (the model's
      content digest included), the key of its ``cache=`` folder;
    - ``_load_model(device)``.

    They may extend ``_on_fit`` (fitted attributes that need the model) and
    ``_model_key`` (what identifies a loaded model). They must have the
    parameters ``device``, ``cache``, ``show_progress_bar`` and
    ``store_weights_in_pickle``.
    """

    _cache_kind = "values"  # the cache's sub-folder: skdeita-<kind>

    # -- what a subclass states ------------------------------------------------

    def _load_model(self, device: str):
        """Load and return the model (called at most once per process and key)."""
        raise NotImplementedError

    def _units(self, prepared) -> Units:
        raise NotImplementedError

    def _compute_units(self, prepared, positions: np.ndarray, isolated: np.ndarray):
        raise NotImplementedError

    def _columns(self, prepared, results: UnitResults) -> dict:
        raise NotImplementedError

    def _value_shape(self) -> tuple[int, type]:
        raise NotImplementedError

    def _cache_identity(self) -> str:
        raise NotImplementedError

    def _on_fit(self) -> None:
        """Set fitted attributes that depend on the model (default: none)."""

    def _model_key(self) -> Hashable | None:
        """Key of the process-wide model cache: every parameter that changes
        what is loaded. ``None`` when the model cannot be shared."""
        params = self.get_params(deep=False)
        loading = tuple(
            (k, repr(v)) for k, v in sorted(params.items()) if k in self._loading_params
        )
        return (type(self).__name__, resolve_device(self.device), *loading)

    # Parameters that change the loaded model (the cache key); subclasses extend.
    _loading_params: frozenset[str] = frozenset({"model", "dtype", "trust_remote_code"})

    # -- the pre-flight check: find the model, load nothing --------------------

    # What ``utils._loading.check_model`` requires of ``model``.
    _model_kind = "transformers"

    def _check_model(self) -> None:
        """Find the model without loading it, or raise saying what is wrong.

        A local folder must hold a config, a tokenizer and weights; a string
        meant as a path must be a folder; a hub name must be well formed and,
        offline, in the local cache. Called by ``pipeline.check_steps`` (every
        model of a pipeline, before the first loads) and before each load.
        """
        check_model(
            self.model,
            self._model_kind,
            local_files_only=getattr(self, "local_files_only", False),
            owner=type(self).__name__,
        )

    def _model_source(self):
        """The model as its files are found (a path or hub name), None for an object."""
        return self.model

    def _model_dtype(self, device: str) -> str:
        """The dtype the weights are loaded in on ``device``."""
        return self.dtype

    def _load_checked(self, device: str):
        """Check the model, log its estimated memory, then load it."""
        self._check_model()
        source = self._model_source()
        if source is not None:
            log_model_memory(type(self).__name__, source, self._model_dtype(device), device)
        return self._load_model(device)

    # -- the shared skeleton ---------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the input columns (no rows are processed).

        Parameters
        ----------
        X : DataFrame
            The input rows.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._check_params()
        if is_dask_collection(X):
            return fit_model_transformer(self, X)
        frame, _ = self._check_input(X)
        self._record_columns(frame)
        self._on_fit()
        return self

    def transform(self, X) -> pd.DataFrame:
        """Return a copy of ``X`` with the computed columns added.

        Parameters
        ----------
        X : DataFrame
            The input rows. A Dask DataFrame gives a lazy Dask DataFrame (one
            task per partition, the model loaded once per worker process).

        Returns
        -------
        X_out : DataFrame
            The input columns, index preserved, plus the added columns.
        """
        check_is_fitted(self, "n_features_in_")
        self._check_params()
        if is_dask_collection(X):
            return transform_model_transformer(self, X)
        frame, prepared = self._check_input(X)
        return self._output(frame, self._compute(prepared))

    def _compute(self, prepared, isolate: np.ndarray | None = None) -> dict:
        """``{column: values}`` for the rows: each distinct unit once, the cached
        ones from the ``cache=`` folder, the rest checkpointed batch by batch.

        ``isolate``: keys to compute each in a batch of its own (on Dask, the
        keys that other partitions hold too).
        """
        return self._columns(prepared, self._run_units(prepared, isolate))

    def _run_units(self, prepared, isolate: np.ndarray | None = None) -> UnitResults:
        """Every unit's value through the compute core (see :mod:`skdeita.utils._units`)."""
        units = self._units(prepared)
        width, dtype = self._value_shape()
        store = self._store(width, dtype)
        results = compute_units(
            units.keys,
            lambda positions, isolated: self._compute_units(prepared, positions, isolated),
            width=width,
            dtype=dtype,
            store=store,
            isolate=isolate,
            progress=self._progress(),
            desc=type(self).__name__,
        )
        if store is not None:
            self._record_cache_stats(units, results)
        return results

    def _store(self, width: int, dtype):
        if getattr(self, "cache", None) is None:
            return None
        return ResultStore.from_param(
            self.cache, self._cache_identity(), self._cache_kind, width=width, dtype=dtype
        )

    def _record_cache_stats(self, units: Units, results: UnitResults) -> None:
        """``cache_stats_`` and one log line: how many rows the cache served."""
        n_rows = units.n_rows
        has_units = np.bincount(units.rows, minlength=n_rows) > 0
        computed = np.bincount(units.rows, weights=~results.from_cache, minlength=n_rows) > 0
        from_cache = int((has_units & ~computed).sum())
        self.cache_stats_ = {
            "rows": n_rows,
            "rows_from_cache": from_cache,
            "units": len(units.keys),
            "units_from_cache": int(results.from_cache.sum()),
            "units_computed": results.n_computed,
        }
        logger.info(
            "%s: %s of %s rows from cache",
            type(self).__name__,
            f"{from_cache:,}",
            f"{n_rows:,}",
            # For the command line, which sums a Dask run's partitions per step.
            extra={"skdeita_cache": {"step": type(self).__name__, **self.cache_stats_}},
        )

    def _output(self, frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
        out = frame.copy()
        for name, values in columns.items():
            out[name] = pd.Series(values, index=frame.index, dtype=_dtype_of(values))
        return out

    @property
    def _model(self):
        """The loaded model, or None: held by the process's model cache (so
        that it can be released), or pinned to this estimator (a model object
        the user passed, or one unpickled with ``store_weights_in_pickle``)."""
        pinned = self.__dict__.get("_pinned_model")
        if pinned is not None:
            return pinned
        key = self._model_key()
        return None if key is None else loaded_model(key)

    def _get_model(self):
        """The loaded model: on first use (never in ``__init__``), once per process."""
        model = self._model
        if model is None:
            check_device(self.device)
            device = resolve_device(self.device)
            key = self._model_key()
            if key is None:  # not shareable: it stays with this estimator
                model = self._pinned_model = self._load_checked(device)
            else:
                model = cached_model(key, lambda: self._load_checked(device), device=device)
        return model

    def _progress(self) -> bool:
        return progress_enabled(self.show_progress_bar)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_pinned_model", None)
        if self.store_weights_in_pickle and self._model is not None:
            state["_pinned_model"] = self._model
        return state


@dataclass
class Units:
    """The units of a checked input: what the compute core works on."""

    keys: np.ndarray  # (n_units,) V16: a digest of everything the model reads
    rows: np.ndarray  # (n_units,) the row position of each unit
    n_rows: int


def _dtype_of(values):
    """Object dtype for per-row lists and arrays; inferred otherwise."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype != object:
        return values.dtype
    return object
