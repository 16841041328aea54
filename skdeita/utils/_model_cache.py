"""Loaded models, shared by every estimator of one process.

Grid-search folds and pipeline clones re-create estimators with the same
parameters; each would otherwise load the same weights again. Inference never
changes a model, so estimators with the same loading parameters share one
object. The cache is bounded (two entries) so that a sweep over models does
not hold them all; a Dask worker process has its own cache, which is what
"loaded once per worker" means.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from threading import Lock

_LOADED: OrderedDict = OrderedDict()
_MAX_LOADED = 2
_LOCK = Lock()


def cached_model(key: Hashable | None, load: Callable[[], object]):
    """The model stored under ``key``, loading it with ``load()`` on a miss.

    ``key=None`` means "not shareable" (for example a model object the user
    passed in): ``load()`` is called and nothing is stored.
    """
    if key is None:
        return load()
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    model = load()
    with _LOCK:
        _LOADED[key] = model
        while len(_LOADED) > _MAX_LOADED:
            _LOADED.popitem(last=False)
    return model


def clear_model_cache() -> None:
    """Forget every loaded model (they are freed when no estimator holds them)."""
    with _LOCK:
        _LOADED.clear()
