"""A real ``distributed.LocalCluster`` (2 worker processes, 1 thread each),
shared by the Dask tests and closed at the end; skipped without Dask."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# Each test module skips itself without dask (pip install 'skdeita[dask]').


@pytest.fixture(scope="session")
def client():
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def make_pool(n=600, dim=8, seed=0, index_start=100) -> pd.DataFrame:
    """Clustered embeddings and integer-valued scores (many ties)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, dim))
    emb = centers[rng.integers(0, 12, n)] + 0.3 * rng.normal(size=(n, dim))
    return pd.DataFrame(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "embedding": list(emb.astype(np.float32)),
            "evol_instruction_score": rng.integers(1, 6, n).astype(float),
            "evol_response_score": rng.integers(1, 4, n).astype(float),
        },
        index=pd.RangeIndex(index_start, index_start + n),
    )


def split(frame: pd.DataFrame, sizes: list[int]):
    """A Dask DataFrame whose partitions have exactly these sizes (zeros allowed),
    with Dask's default string conversion for the text columns and the vector
    column kept as arrays (as read from Parquet list<float32>)."""
    import dask
    import dask.dataframe as dd

    assert sum(sizes) == len(frame)
    bounds = np.cumsum([0, *sizes])
    pieces = [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    meta = frame.iloc[:0]
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(_piece, pieces, meta=meta, enforce_metadata=False)


def _piece(frame):
    return frame
