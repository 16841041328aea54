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
import logging

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

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


def local_cluster(n_workers: int, *, device: str | None = None, **kwargs):
    """A Dask cluster of ``n_workers`` processes on this machine, one GPU each.

    With ``device`` ``"cuda"`` (or ``"cuda:N"``), each worker sees exactly one
    GPU, so that N workers load N models on N GPUs rather than N models on
    GPU 0: dask-cuda's ``LocalCUDACluster`` where it is installed, otherwise
    worker processes whose ``CUDA_VISIBLE_DEVICES`` each name one device (of
    this process's ``CUDA_VISIBLE_DEVICES`` when it is set). Otherwise a
    plain ``LocalCluster``. One thread per worker: a worker runs one model.

    Parameters
    ----------
    n_workers : int
        Worker processes (at most the GPUs visible, with a CUDA device).
    device : str or None, default=None
        The device the models will run on.
    **kwargs
        Passed to the cluster (e.g. ``memory_limit``).

    Returns
    -------
    cluster : distributed.SpecCluster
        Close it (or use it in a ``with`` block) when done.

    Examples
    --------
    >>> from skdeita import local_cluster
    >>> from distributed import Client
    >>> with local_cluster(2, dashboard_address=None) as cluster, Client(cluster) as client:
    ...     len(client.scheduler_info()["workers"])
    2
    """
    distributed = require("distributed", "local_cluster")
    options = {"threads_per_worker": 1, "dashboard_address": None, **kwargs}
    if not str(device or "").startswith("cuda"):
        return distributed.LocalCluster(n_workers=n_workers, processes=True, **options)
    visible = gpu_devices(n_workers)
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        pass
    else:
        return LocalCUDACluster(CUDA_VISIBLE_DEVICES=visible, n_workers=n_workers, **options)
    from distributed import Nanny, Scheduler, SpecCluster

    dashboard = options.pop("dashboard_address")
    threads = options.pop("threads_per_worker")
    workers = {
        f"gpu-{gpu}": {
            "cls": Nanny,
            "options": {"nthreads": threads, "env": {"CUDA_VISIBLE_DEVICES": gpu}, **options},
        }
        for gpu in visible
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": dashboard}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def gpu_devices(n_workers: int) -> list[str]:
    """The GPU ids the workers get, one each: ``CUDA_VISIBLE_DEVICES`` when set
    (its entries may be UUIDs), else ``0 .. n-1``."""
    import os

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [d.strip() for d in listed.split(",") if d.strip()]
        if n_workers > len(ids):
            raise ValueError(
                f"{n_workers} GPU workers asked for, but CUDA_VISIBLE_DEVICES={listed!r} "
                f"names {len(ids)} device(s): one worker per GPU."
            )
        return ids[:n_workers]
    return [str(i) for i in range(n_workers)]


def forward_logs(client, level: int = logging.INFO) -> None:
    """Send skdeita's log records at ``level`` and above from every worker
    (restarted ones too) to this client's ``"skdeita"`` logger: the model
    memory lines and each partition's "N of M rows from cache"."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class _SkdeitaLogLevel(WorkerPlugin):
        name = "skdeita-log-level"

        def setup(self, worker):
            logging.getLogger("skdeita").setLevel(level)

    client.register_plugin(_SkdeitaLogLevel())
    client.forward_logging("skdeita", level=level)


def runs_skdeita_model(ddf) -> bool:
    """Whether computing ``ddf`` runs a skdeita model (a lazy transform's output).

    A consumer that reads its input several times (the selection) persists
    such an input first, so that the model runs once. Any Dask collection
    works: the graph's task names tell (:data:`TASK_PREFIX`).
    """
    for key in ddf.__dask_graph__():
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith(TASK_PREFIX):
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
    empty = est._compute(prepared)
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
    if estimator._model is not None:
        _, prepared = estimator._check_input(meta.iloc[:0])
        empty = estimator._compute(prepared)
    else:
        _, empty = _run_task(_describe, _without_model(estimator), meta)
    estimator._dask_empty_columns = empty
    return empty


# Task names start with this: what :func:`runs_skdeita_model` looks for.
TASK_PREFIX = "skdeita-"


def _partition_keys(part, estimator) -> np.ndarray:
    """The distinct unit keys of one partition (checked input, no model)."""
    _, prepared = estimator._check_input(part)
    return np.unique(estimator._units(prepared).keys)


def _shared_keys(*per_partition: np.ndarray) -> np.ndarray:
    """The keys that occur in more than one partition."""
    if len(per_partition) < 2:
        return np.empty(0, dtype="V16")
    keys, counts = np.unique(np.concatenate(per_partition), return_counts=True)
    return keys[counts > 1]


def _transform_partition(part, estimator, shared):
    """One partition through the pandas path (the model from this process's
    cache); units that other partitions hold too are computed alone, so that
    every copy gets the same bits."""
    check_is_fitted(estimator, "n_features_in_")
    frame, prepared = estimator._check_input(part)
    return estimator._output(frame, estimator._compute(prepared, isolate=shared))


def transform_model_transformer(estimator, X):
    """``transform`` on a Dask collection: lazy, one task per partition.

    Identical inputs must get identical values wherever they are (an exact
    tie in the selection is otherwise broken by float noise): a first pass
    hashes every partition's inputs (no model), and the inputs found in more
    than one partition are computed in batches of their own by each
    partition that holds them. The partitions are read once for both passes
    (one graph over the same tasks).
    """
    import dask

    check_dask_frame(X, type(estimator).__name__, series_ok=True)
    dd = import_dask(type(estimator).__name__)
    frame, _ = estimator._check_input(X._meta)
    meta = estimator._output(frame.iloc[:0], _empty_columns(estimator, X._meta))
    est = _without_model(estimator)
    name = f"{TASK_PREFIX}{type(estimator).__name__.lower()}"
    token = dask.base.tokenize(X, est)
    parts = X.to_delayed()
    keys = [
        dask.delayed(_partition_keys, pure=True)(p, est, dask_key_name=(f"{name}-keys-{token}", i))
        for i, p in enumerate(parts)
    ]
    shared = dask.delayed(_shared_keys, pure=True)(*keys, dask_key_name=f"{name}-shared-{token}")
    outs = [
        dask.delayed(_transform_partition, pure=True)(
            p, est, shared, dask_key_name=(f"{name}-{token}", i)
        )
        for i, p in enumerate(parts)
    ]
    # The added columns hold Python objects (vectors, lists): Dask must not
    # turn them into strings, as it does by default for a new collection.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(outs, meta=meta, divisions=X.divisions, verify_meta=False)
