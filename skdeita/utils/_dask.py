"""Dask support: optional imports, checks, and the model-backed transform.

Nothing here imports Dask at module level: :func:`is_dask_collection` looks
at the type only, so ``import skdeita`` never pulls Dask in, and the other
helpers import it on first use (with an install hint when it is missing).

The model-backed estimators (:class:`~skdeita.base.BaseModelTransformer`)
get their Dask path from :func:`fit_model_transformer` and
:func:`transform_model_transformer`:

- ``fit`` checks the columns on ``ddf._meta`` (no partition is computed) and
  runs ``_on_fit`` in one task, so the model loads where the work will run
  (a worker, with its GPU), and records the dtypes of the added columns from
  an empty batch;
- ``transform`` returns ``ddf.map_partitions(...)`` with ``meta`` built from
  ``ddf._meta``; each task unpickles the estimator *without* weights and
  calls its pandas ``transform``, whose model comes from the worker process's
  cache (:mod:`skdeita.utils._model_cache`): loaded once per worker process,
  never shipped in the task graph.
"""

from __future__ import annotations

import copy

import pandas as pd

from ._optional import require

PRINTED_VECTORS_HINT = (
    "Dask's string conversion (the 'dataframe.convert-string' option, on by default) "
    "turns an object column of arrays into their printed text when a pandas frame "
    "becomes a Dask DataFrame. Store embeddings as a Parquet list<float32> column "
    "(DataFrame.to_parquet, then dask.dataframe.read_parquet), or create the Dask "
    "DataFrame inside dask.config.set({'dataframe.convert-string': False})."
)


def is_dask_collection(X) -> bool:
    """Whether ``X`` is a Dask collection (no Dask import needed to say no)."""
    module = type(X).__module__ or ""
    return module.split(".")[0] in {"dask", "dask_expr"} and hasattr(X, "__dask_graph__")


def import_dask(feature: str):
    """``dask.dataframe``, or an ImportError naming the ``dask`` extra."""
    require("dask", feature)
    return require("dask.dataframe", feature)


def check_dask_frame(X, estimator: str, *, series_ok: bool = False):
    """Require a Dask DataFrame (or Series when ``series_ok``)."""
    dd = import_dask(f"{estimator} on a Dask collection")
    kinds = (dd.DataFrame, dd.Series) if series_ok else (dd.DataFrame,)
    if not isinstance(X, kinds):
        raise TypeError(f"{estimator} expects a dask.dataframe.DataFrame, got {type(X).__name__}.")
    return X


def check_vector_column(meta: pd.DataFrame, column: str, what: str) -> None:
    """A column of vectors must not have been converted to strings by Dask."""
    if column not in meta.columns:
        return
    dtype = meta[column].dtype
    if isinstance(dtype, pd.StringDtype) or (
        isinstance(dtype, pd.ArrowDtype) and pd.api.types.is_string_dtype(dtype)
    ):
        raise TypeError(
            f"{what} {column!r} of this Dask DataFrame has dtype {dtype}: it holds "
            "text (printed arrays), not one vector per row. " + PRINTED_VECTORS_HINT
        )


def current_client():
    """The active ``distributed.Client``, or None (local schedulers)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def runs_skdeita_model(ddf) -> bool:
    """Whether computing ``ddf`` runs a skdeita model (a lazy transform's output).

    A consumer that reads its input several times (the selection) persists
    such an input first, so that the model runs once.
    """
    expr = getattr(ddf, "expr", None)
    if expr is None:
        return False
    for node in expr.walk():
        # Read the operand, not the attribute: an attribute a node lacks is looked
        # up in its ``_meta``, which some nodes (dd.from_delayed's) cannot build.
        if "func" in getattr(type(node), "_parameters", ()):
            if node.operand("func") is _transform_partition:
                return True
    return False


# -- the model-backed transform -------------------------------------------------


def _without_model(estimator):
    """A shallow copy that pickles without weights, whatever the settings."""
    est = copy.copy(estimator)
    est.__dict__.pop("_model", None)
    return est


def _describe(estimator, meta):
    """Run on a worker: load the model, set the fitted attributes, and compute
    the added columns of an empty batch (their dtypes, for ``meta``)."""
    est = copy.copy(estimator)
    est._on_fit()
    fitted = {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
    _, prepared = est._check_input(meta.iloc[:0])
    empty = est._compute(est._get_model(), prepared)
    return fitted, empty


def _run_task(func, *args):
    """Run one small task where the partitions run (the cluster, if any)."""
    import dask

    return dask.delayed(func, pure=False)(*args).compute()


def fit_model_transformer(estimator, X):
    """``fit`` on a Dask collection: columns from ``_meta``, the model on a worker."""
    check_dask_frame(X, type(estimator).__name__, series_ok=True)
    frame, _ = estimator._check_input(X._meta)
    fitted, empty = _run_task(_describe, _without_model(estimator), X._meta)
    for name, value in fitted.items():
        setattr(estimator, name, value)
    estimator._record_columns(frame)
    estimator._dask_empty_columns = empty
    return estimator


def _empty_columns(estimator, meta) -> dict:
    """The added columns of an empty batch: from a Dask fit, from a model
    already loaded here (a pandas fit), or from one task on the cluster."""
    empty = getattr(estimator, "_dask_empty_columns", None)
    if empty is not None:
        return empty
    model = getattr(estimator, "_model", None)
    if model is not None:
        _, prepared = estimator._check_input(meta.iloc[:0])
        empty = estimator._compute(model, prepared)
    else:
        _, empty = _run_task(_describe, _without_model(estimator), meta)
    estimator._dask_empty_columns = empty
    return empty


def _transform_partition(part, estimator):
    """One partition through the pandas path (the model from this process's cache)."""
    return estimator.transform(part)


def transform_model_transformer(estimator, X):
    """``transform`` on a Dask collection: lazy, one task per partition."""
    check_dask_frame(X, type(estimator).__name__, series_ok=True)
    frame, _ = estimator._check_input(X._meta)
    meta = estimator._output(frame.iloc[:0], _empty_columns(estimator, X._meta))
    name = f"skdeita-{type(estimator).__name__.lower()}"
    return X.map_partitions(
        _transform_partition,
        _without_model(estimator),
        meta=meta,
        token=name,
        enforce_metadata=False,
        transform_divisions=False,
        align_dataframes=False,
    )
