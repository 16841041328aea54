"""Every exception and warning that skdeita raises to its users.

Errors about bad input are the built-in ``ValueError`` and ``TypeError``
(naming the parameter, column or row), as in scikit-learn; the classes here
are the ones a caller may want to catch or filter on their own.
"""

from __future__ import annotations

__all__ = [
    "BudgetNotReachedWarning",
    "CacheDamagedWarning",
    "CacheError",
    "CacheWriteWarning",
    "InputChangedError",
    "ModelNotFoundError",
    "ScoringError",
    "ScoringFailedWarning",
    "TruncationWarning",
]


class ModelNotFoundError(OSError):
    """A model could not be loaded from a local path or the local HF cache."""


class BudgetNotReachedWarning(UserWarning):
    """Fewer rows passed the diversity check than the budget asked for."""


class InputChangedError(RuntimeError):
    """A Dask input gave other rows or scores on a later pass of a selection.

    The selection reads its input more than once; persist the input
    (``ddf.persist()``) or write it to Parquet first.
    """


class ScoringError(RuntimeError):
    """A scorer could not score a row (with ``on_error="raise"``).

    The message names the row label; the original error is chained.
    """


class ScoringFailedWarning(UserWarning):
    """Some rows could not be scored and were given NaN (``on_error="nan"``)."""


class TruncationWarning(UserWarning):
    """Texts were cut to fit a model's context (the template's cue is kept)."""


class CacheError(OSError):
    """The ``cache=`` folder cannot be created or written (checked before any
    model loads)."""


class CacheDamagedWarning(UserWarning):
    """A file in the ``cache=`` folder is truncated, corrupted or foreign: it is
    skipped (never trusted) and its rows are computed again."""


class CacheWriteWarning(UserWarning):
    """Writing to the ``cache=`` folder failed during a run (a full disk, a
    folder made read-only): checkpointing stops, the run goes on, and what was
    written before stays valid."""
