"""Scale-out on Dask: embedding throughput and out-of-core selection.

Two benchmarks, each runnable against a local cluster (started here, in a
separate process so that the client's memory is its own) or against a real
scheduler (``--scheduler tcp://HOST:8786``, workers started by you):

``embed``
    Embedding throughput on real AlpacaEval texts (instruction + output, the
    packaged all-MiniLM-L6-v2, CPU): ``EmbeddingTransformer`` on pandas in one
    process (torch's default threads), then the same estimator over a Dask
    DataFrame on a cluster of 1 worker and of ``--workers`` workers (1 thread
    each; distributed sets OMP_NUM_THREADS=1 in its workers). Embeddings are
    checked against the pandas ones (atol 1e-5).

``select``
    ``DeitaSelector`` over a Parquet dataset of ``--rows`` x ``--dim`` float32
    embeddings (a ``list<float32>`` column; synthetic: clusters of
    near-duplicates, two integer-valued score columns), written to ``--data``
    once and reused. Reports time, rows visited, rows kept and the client's
    extra peak RSS (high-water mark after connecting, reset through
    ``/proc/self/clear_refs``). ``--check`` also runs the in-memory pandas
    selection (after the measurement, in this process) and asserts the same
    kept rows, order, scores and distances.

Examples::

    python benchmarks/bench_dask.py embed --texts 800 --workers 2
    python benchmarks/bench_dask.py select --rows 1000000 --dim 64 --check
    python benchmarks/bench_dask.py select --rows 10000000 --dim 384 \\
        --data /big/disk/emb-10m --scheduler tcp://scheduler:8786
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"


# -- a cluster in its own process -------------------------------------------------


def serve_cluster(workers: int) -> None:
    """``cluster`` subcommand: run a LocalCluster until stdin closes."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()


class Cluster:
    """A scheduler address: the given one, or a local cluster in a subprocess."""

    def __init__(self, scheduler: str | None, workers: int):
        self.proc = None
        self.address = scheduler
        if scheduler is None:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "cluster", "--workers", str(workers)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.address = self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def client_for(address: str, workers: int | None = None):
    from distributed import Client

    client = Client(address)
    if workers:
        client.wait_for_workers(workers)
    return client


# -- embed ---------------------------------------------------------------------------


def load_texts(n: int) -> list[str]:
    texts: list[str] = []
    for path in sorted(RESULTS.glob("*.json")):
        texts += [f"{r['instruction']}\n\n{r['output']}" for r in json.loads(path.read_text())]
    texts = list(dict.fromkeys(texts))  # distinct texts: no dedupe effect
    if len(texts) < n:
        sys.exit(f"only {len(texts)} distinct texts under {RESULTS}")
    return texts[:n]


def bench_embed(args) -> None:
    """Best of ``--repeats`` interleaved runs of each set-up (shared machines are noisy)."""
    import dask.dataframe as dd

    from skdeita import EmbeddingTransformer

    frame = pd.DataFrame({"text": load_texts(args.texts)})
    emb = dict(batch_size=args.batch_size, show_progress_bar=False, device="cpu")
    warm = frame.iloc[:8]
    local = EmbeddingTransformer(**emb).fit(warm)
    local.transform(warm)
    expected = None

    sizes = sorted({1, args.workers})
    clusters = {w: Cluster(args.scheduler if w == args.workers else None, w) for w in sizes}
    try:
        clients = {w: client_for(c.address, w) for w, c in clusters.items()}
        fitted = {}
        for w, client in clients.items():
            with client.as_current():
                ddf = dd.from_pandas(frame, npartitions=args.partitions_per_worker * w)
                est = EmbeddingTransformer(**emb).fit(ddf)
                est.transform(dd.from_pandas(warm, npartitions=w)).compute()  # load models
                fitted[w] = (est, ddf)
        times: dict = {"pandas": [], **{w: [] for w in sizes}}
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = local.transform(frame)
            times["pandas"].append(time.perf_counter() - t)
            expected = np.stack(out["embedding"])
            for w, client in clients.items():
                est, ddf = fitted[w]
                with client.as_current():
                    t = time.perf_counter()
                    got = est.transform(ddf).compute()
                    times[w].append(time.perf_counter() - t)
                np.testing.assert_allclose(np.stack(got["embedding"]), expected, atol=1e-5)
        for client in clients.values():
            client.close()
    finally:
        for c in clusters.values():
            c.close()
    best = {k: min(v) for k, v in times.items()}
    n = len(frame)
    print(
        f"\n## Embedding throughput: {n} AlpacaEval texts, batch {args.batch_size}, CPU, "
        f"best of {args.repeats} interleaved runs\n"
    )
    print("| run | time (s) | texts/s |\n|---|---:|---:|")
    print(
        f"| pandas, 1 process (torch threads: default) | {best['pandas']:.1f} "
        f"| {n / best['pandas']:.1f} |"
    )
    for w in sizes:
        label = f"Dask, {w} worker{'s' if w > 1 else ''} x 1 thread"
        print(f"| {label} | {best[w]:.1f} | {n / best[w]:.1f} |")
    w = args.workers
    print(f"\nspeed-up, {w} workers vs 1 worker: {best[1] / best[w]:.2f}x")
    print(f"speed-up, {w} workers vs 1 pandas process: {best['pandas'] / best[w]:.2f}x")
    runs = {str(k): [round(x, 1) for x in v] for k, v in times.items()}
    print(f"all runs (s): {json.dumps(runs)}")


# -- select --------------------------------------------------------------------------


def write_dataset(folder: Path, rows: int, dim: int, per_file: int, seed: int = 0) -> None:
    """Clusters of near-duplicates as a Parquet list<float32> column, in files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = folder / "_SHAPE.json"
    shape = {"rows": rows, "dim": dim, "per_file": per_file, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == shape:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, rows // 50), dim), dtype=np.float32)
    for k, start in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - start)
        emb = centers[rng.integers(0, len(centers), n)]
        emb += 0.2 * rng.standard_normal((n, dim), dtype=np.float32)
        offsets = np.arange(0, (n + 1) * dim, dim, dtype=np.int32)
        table = pa.table(
            {
                "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.ravel())),
                "evol_instruction_score": rng.integers(1, 6, n).astype(np.float64),
                "evol_response_score": rng.integers(1, 6, n).astype(np.float64),
            }
        )
        pq.write_table(table, folder / f"part.{k:05d}.parquet", compression="snappy")
    stamp.write_text(json.dumps(shape))


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))


def bench_select(args) -> None:
    import dask.dataframe as dd

    from skdeita import DeitaSelector

    data = Path(args.data or f"/tmp/skdeita-bench-{args.rows}x{args.dim}")
    t = time.perf_counter()
    write_dataset(data, args.rows, args.dim, args.rows_per_file)
    t_write = time.perf_counter() - t
    files = sorted(str(p) for p in data.glob("*.parquet"))
    cluster = Cluster(args.scheduler, args.workers)
    try:
        client = client_for(cluster.address, None if args.scheduler else args.workers)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak-RSS mark: count from here
        before = _status("VmRSS")
        selector = DeitaSelector(
            args.budget,
            diversity_threshold=args.threshold,
            show_progress_bar=False,
        )
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ddf = dd.read_parquet(files)
            out = selector.fit_transform(ddf)  # the selection runs here; out is lazy
        seconds = time.perf_counter() - t
        peak = _status("VmHWM")
        report(args, data, files, ddf.npartitions, t_write, seconds, selector, before, peak)
        if args.check:
            check(files, args, selector, out.compute())
        client.close()
    finally:
        cluster.close()


def report(args, data, files, nparts, t_write, seconds, selector, before, peak) -> None:
    matrix = args.rows * args.dim * 4
    mb = 2**20
    print(
        f"\n## Selection over Parquet: {args.rows:,} x {args.dim} float32 "
        f"({matrix / 2**30:.2f} GiB of embeddings, {len(files)} files, {nparts} partitions), "
        f"budget {args.budget:,}, threshold {args.threshold}\n"
    )
    print(f"dataset written in {t_write:.0f} s (0 when reused): {data}\n")
    print(
        "| time (s) | rows visited | kept | client RSS after connect (MB) "
        "| client extra peak (MB) | extra peak / matrix |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    extra = peak - before
    print(
        f"| {seconds:.1f} | {selector.n_visited_:,} | {selector.n_selected_:,} "
        f"| {before / mb:.0f} | {extra / mb:.1f} | {extra / matrix:.3f} |",
        flush=True,
    )


def check(files, args, selector, got: pd.DataFrame) -> None:
    """The in-memory pandas selection on the same rows, compared exactly."""
    from skdeita import DeitaSelector

    frame = pd.concat([pd.read_parquet(f) for f in files])
    ref = DeitaSelector(args.budget, diversity_threshold=args.threshold, show_progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        expected = ref.fit_transform(frame)
        seconds = time.perf_counter() - t
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert ref.n_visited_ == selector.n_visited_
    print(
        "\ncheck: the same kept rows in the same order, with bit-identical deita_score "
        "and nearest_neighbor_distance, as the in-memory pandas selection "
        f"(which took {seconds:.1f} s on the frame already in memory)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cluster", help="(internal) serve a LocalCluster")
    c.add_argument("--workers", type=int, default=2)
    e = sub.add_parser("embed", help="embedding throughput")
    e.add_argument("--texts", type=int, default=800)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--partitions-per-worker", type=int, default=4)
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--scheduler", default=None, help="tcp://HOST:PORT (default: local)")
    s = sub.add_parser("select", help="out-of-core selection from Parquet")
    s.add_argument("--rows", type=int, default=1_000_000)
    s.add_argument("--dim", type=int, default=64)
    s.add_argument("--rows-per-file", type=int, default=100_000)
    s.add_argument("--budget", type=int, default=10_000)
    s.add_argument("--threshold", type=float, default=0.1)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--data", default=None, help="dataset folder (written once, reused)")
    s.add_argument("--scheduler", default=None, help="tcp://HOST:PORT (default: local)")
    s.add_argument("--check", action="store_true", help="compare with the pandas selection")
    args = parser.parse_args()
    if args.command == "cluster":
        serve_cluster(args.workers)
    elif args.command == "embed":
        bench_embed(args)
    else:
        bench_select(args)


if __name__ == "__main__":
    main()
