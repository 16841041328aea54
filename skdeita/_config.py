"""Process-wide settings, in the manner of :func:`sklearn.set_config`."""

from __future__ import annotations

import threading
from contextlib import contextmanager

_DEFAULTS = {"keep_models": False}
_local = threading.local()


def _settings() -> dict:
    if not hasattr(_local, "config"):
        _local.config = dict(_GLOBAL)
    return _local.config


_GLOBAL = dict(_DEFAULTS)


def get_config() -> dict:
    """The current settings.

    Returns
    -------
    config : dict
        ``keep_models``: whether a model loaded on a device stays loaded when
        another model is loaded on the same device (default False: a
        pipeline holds one model per device at a time).

    Examples
    --------
    >>> import skdeita
    >>> skdeita.get_config()["keep_models"]
    False
    """
    return dict(_settings())


def set_config(keep_models: bool | None = None) -> None:
    """Change the settings for this process (every thread).

    Parameters
    ----------
    keep_models : bool or None, default=None
        Keep every loaded model (True), or release the models on a device
        before another one loads there (False, the default). None leaves it
        as it is. On Dask, set it on the workers:
        ``client.run(skdeita.set_config, keep_models=True)``.

    Examples
    --------
    >>> import skdeita
    >>> skdeita.set_config(keep_models=True)
    >>> skdeita.get_config()["keep_models"]
    True
    >>> skdeita.set_config(keep_models=False)
    """
    if keep_models is not None:
        _GLOBAL["keep_models"] = bool(keep_models)
        _settings()["keep_models"] = bool(keep_models)


@contextmanager
def config_context(*, keep_models: bool | None = None):
    """Change the settings inside a ``with`` block (this thread only).

    Parameters
    ----------
    keep_models : bool or None, default=None
        See :func:`set_config`.

    Examples
    --------
    >>> import skdeita
    >>> with skdeita.config_context(keep_models=True):
    ...     skdeita.get_config()["keep_models"]
    True
    """
    old = dict(_settings())
    if keep_models is not None:
        _settings()["keep_models"] = bool(keep_models)
    try:
        yield
    finally:
        _local.config = old
