"""Helpers for the result-store tests: stores in tmp folders, rows whose values
are a known function of their index, and Python child processes that import
this checkout's skdeita."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import skdeita
from skdeita.exceptions import CacheDamagedWarning
from skdeita.utils._disk_cache import ResultStore, unit_keys

ROOT = Path(skdeita.__file__).resolve().parents[1]


def texts(start: int, stop: int) -> list[str]:
    return [f"unit {i}" for i in range(start, stop)]


def expected_values(start: int, stop: int, width: int = 3, dtype="f8") -> np.ndarray:
    """Row i holds i, i + 0.5, i - 1, i + 1.5, ...: exact in float32 below 2**20."""
    i = np.arange(start, stop, dtype=np.float64)[:, None]
    return (i + np.arange(width) * 0.5 * np.where(np.arange(width) % 2, 1, -1)).astype(dtype)


def make_store(folder, identity: str = "model-a", width: int = 3, dtype="f8") -> ResultStore:
    return ResultStore.from_param(folder, identity, "scores", width=width, dtype=dtype)


def write_rows(store: ResultStore, start: int, stop: int, batch: int, **writer_kw) -> None:
    with store.writer(**writer_kw) as writer:
        for lo in range(start, stop, batch):
            hi = min(lo + batch, stop)
            writer.add(unit_keys(texts(lo, hi)), expected_values(lo, hi, store.width, store.dtype))


def rec_files(store: ResultStore) -> list[str]:
    return sorted(p.name for p in store.directory.glob("*.rec"))


def lookup_quietly(store: ResultStore, keys) -> tuple[np.ndarray, np.ndarray]:
    """Look up, failing the test on any damage warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheDamagedWarning)
        return store.lookup(keys)


def python(script: str, *args, **popen_kw) -> subprocess.Popen:
    """Start a Python child running ``script`` with this checkout first on its path."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    return out


# Child-side helpers, pasted at the top of child scripts.
CHILD_PRELUDE = """
import json, os, signal, sys, time, warnings
import numpy as np
from skdeita.utils._disk_cache import ResultStore, unit_keys

def texts(start, stop):
    return [f"unit {i}" for i in range(start, stop)]

def expected_values(start, stop, width=3, dtype="f8"):
    i = np.arange(start, stop, dtype=np.float64)[:, None]
    return (i + np.arange(width) * 0.5 * np.where(np.arange(width) % 2, 1, -1)).astype(dtype)
"""


@pytest.fixture
def store(tmp_path) -> ResultStore:
    return make_store(tmp_path / "cache")


def wait_for(condition, timeout: float = 60.0, what: str = "the child") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
