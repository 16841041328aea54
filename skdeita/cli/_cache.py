"""The commands' result cache: on by default, beside the output.

Every model step (the scorers, the embedder, PairRM) writes its results to
the cache folder batch by batch, so running the same command again after an
interruption (a crash, Ctrl-C, a preempted machine) recomputes only what is
missing. The folder is ``<output>.cache`` beside the output unless
``--cache DIR`` names another; ``--no-cache`` keeps nothing. After the run,
one line per step says how many rows came from the cache.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from ..exceptions import CacheError

# Each step's "rows from cache" records, summed (a Dask run sends one per partition).
_USE: dict[str, list[int]] = {}
_LABELS = {
    "ComplexityScorer": "complexity scores",
    "QualityScorer": "quality scores",
    "IFDScorer": "IFD scores",
    "EmbeddingTransformer": "embeddings",
    "PairRMRanker": "PairRM ranks",
}


def add_cache_arguments(parser) -> None:
    """``--cache DIR`` and ``--no-cache``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="folder where every model step keeps its results as it computes them, so that "
        "the same command resumes after an interruption (default: OUTPUT.cache beside the "
        "output)",
    )
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="keep no results on disk (an interrupted run starts again from the first row)",
    )


def default_cache_dir(output: str) -> str:
    """``<output>.cache`` beside the output (a Parquet folder ``out/`` gives ``out.cache``)."""
    path = Path(output.rstrip("/\\") or output)
    return str(path.with_name(path.name + ".cache"))


def cache_dir(args) -> str | None:
    """The cache folder the command uses, or None with ``--no-cache``."""
    if args.no_cache:
        return None
    return args.cache or default_cache_dir(args.output)


def check_cache_dir(path: str | None) -> None:
    """The folder must exist or be creatable, and be writable: before any model loads."""
    if path is None:
        return
    where = Path(path)
    try:
        if where.exists() and not where.is_dir():
            raise NotADirectoryError(f"{path} is a file")
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CacheError(
            f"the cache folder {path} cannot be written ({exc.strerror or exc}); pass "
            "--cache DIR for another folder, or --no-cache"
        ) from None


def announce(path: str | None) -> None:
    if path is not None:
        print(
            f"skdeita: cache: {path} (run the same command again to resume after an "
            "interruption; --no-cache to keep nothing)",
            file=sys.stderr,
        )


def record(log: logging.LogRecord) -> bool:
    """Take a step's "rows from cache" record (True) or leave it (False)."""
    use = getattr(log, "skdeita_cache", None)
    if use is None:
        return False
    totals = _USE.setdefault(use["step"], [0, 0])
    totals[0] += use["rows_from_cache"]
    totals[1] += use["rows"]
    return True


def report_use(steps) -> None:
    """One line per model step: how many of its rows came from the cache."""
    for step in steps:
        name = type(step).__name__
        if name in _USE:
            cached, rows = _USE.pop(name)
            label = _LABELS.get(name, name)
            print(f"skdeita: {label}: {cached:,} of {rows:,} rows from cache", file=sys.stderr)
