"""The skeleton every skdeita estimator is built on: DataFrame in, DataFrame out.

- :class:`FrameTransformerMixin`: tags, input-column bookkeeping and output
  names of a transformer over a pandas DataFrame with named columns.
- :class:`BaseModelTransformer`: a transformer backed by a model (an
  embedder, a ranker, a scoring LM). It fixes the order of work so that each
  subclass only states its own columns and its own batch computation:

  1. parameters are validated (``_parameter_constraints``);
  2. the input is checked (``_check_input``: columns, values, row labels),
     *before* any model loads;
  3. the model is loaded lazily on first use, once per process (shared by
     clones through :mod:`skdeita.utils._model_cache`), held in the private
     attribute ``_model`` and left out of pickles unless
     ``store_weights_in_pickle=True``;
  4. ``_compute`` runs on the checked input, and the result is added to a
     copy of the caller's frame, never to the frame itself.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import check_is_fitted

from .utils._dask import (
    fit_model_transformer,
    is_dask_collection,
    transform_model_transformer,
)
from .utils._loading import check_model, log_model_memory
from .utils._model_cache import cached_model
from .utils._optional import resolve_device
from .utils._progress import progress_enabled
from .utils._validation import check_device


class FrameTransformerMixin:
    """Tags, input-column bookkeeping and output names of a DataFrame transformer."""

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

    Subclasses define ``_check_input``, ``_load_model``, ``_compute`` and
    ``_added_columns``; they may extend ``_on_fit`` (fitted attributes that
    need the model) and ``_model_key`` (what identifies a loaded model).
    They must have the parameters ``device``, ``show_progress_bar`` and
    ``store_weights_in_pickle``.
    """

    # -- what a subclass states ------------------------------------------------

    def _check_input(self, X) -> tuple[pd.DataFrame, object]:
        """``(frame, prepared)``: the frame to copy and what ``_compute`` needs.

        Must raise on any bad input without loading a model.
        """
        raise NotImplementedError

    def _load_model(self, device: str):
        """Load and return the model (called at most once per process and key)."""
        raise NotImplementedError

    def _compute(self, model, prepared) -> dict:
        """``{column: values}`` to add, one value per row of the frame."""
        raise NotImplementedError

    def _added_columns(self) -> list[str]:
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
        if is_dask_collection(X):
            return transform_model_transformer(self, X)
        frame, prepared = self._check_input(X)
        return self._output(frame, self._compute(self._get_model(), prepared))

    def _output(self, frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
        out = frame.copy()
        for name, values in columns.items():
            out[name] = pd.Series(values, index=frame.index, dtype=_dtype_of(values))
        return out

    def _get_model(self):
        """The loaded model: on first use (never in ``__init__``), once per process."""
        model = getattr(self, "_model", None)
        if model is None:
            check_device(self.device)
            device = resolve_device(self.device)
            model = cached_model(self._model_key(), lambda: self._load_checked(device))
            self._model = model
        return model

    def _progress(self) -> bool:
        return progress_enabled(self.show_progress_bar)

    def __getstate__(self):
        state = super().__getstate__()
        if not self.store_weights_in_pickle:
            state.pop("_model", None)
        return state


def _dtype_of(values):
    """Object dtype for per-row lists and arrays; inferred otherwise."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype != object:
        return values.dtype
    return object
