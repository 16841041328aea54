"""Loaded models, shared by every estimator of one process, one per device.

Grid-search folds and pipeline clones re-create estimators with the same
parameters; each would otherwise load the same weights again. Inference never
changes a model, so estimators with the same loading parameters share one
object, held here and nowhere else (an estimator looks its model up on each
use), so that releasing it here frees its memory.

A DEITA pipeline loads two 13B scorers and an embedder: held together they do
not fit one GPU. So by default loading a model on a device first releases
every other model held on that device (a vLLM engine is shut down, CUDA
memory is returned): a pipeline holds one model per device at a time.
``skdeita.set_config(keep_models=True)`` keeps them all instead. A Dask
worker process has its own cache: "loaded once per worker".
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from threading import RLock

from .._config import get_config

logger = logging.getLogger("skdeita")

_LOADED: OrderedDict = OrderedDict()  # key -> (device, model)
_LOCK = RLock()


def cached_model(key: Hashable, load: Callable[[], object], device: str = "cpu"):
    """The model stored under ``key``, loading it with ``load()`` on a miss."""
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key][1]
        if not get_config()["keep_models"]:
            _release([k for k, (d, _) in _LOADED.items() if d == device])
        model = load()
        _LOADED[key] = (device, model)
        return model


def loaded_model(key: Hashable):
    """The model stored under ``key``, or None (nothing is loaded)."""
    with _LOCK:
        entry = _LOADED.get(key)
        return None if entry is None else entry[1]


def put_model(key: Hashable, model, device: str = "cpu") -> None:
    """Store an already loaded model (one unpickled with its estimator)."""
    with _LOCK:
        if key not in _LOADED:
            if not get_config()["keep_models"]:
                _release([k for k, (d, _) in _LOADED.items() if d == device])
            _LOADED[key] = (device, model)


def release_model(key: Hashable) -> None:
    """Release the model stored under ``key`` (nothing happens if none is)."""
    with _LOCK:
        _release([key] if key in _LOADED else [])


def clear_model_cache() -> None:
    """Release every loaded model."""
    with _LOCK:
        _release(list(_LOADED))


def _release(keys: list) -> None:
    if not keys:
        return
    devices = set()
    for key in keys:
        device, model = _LOADED.pop(key)
        devices.add(device)
        close = getattr(model, "close", None)
        if callable(close):  # an engine with processes or device memory of its own
            close()
        logger.debug("released model %r from %s", key, device)
        del model
    gc.collect()
    if any(str(d).startswith("cuda") for d in devices):
        import torch

        torch.cuda.empty_cache()
