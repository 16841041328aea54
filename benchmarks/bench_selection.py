"""Selection speed and memory: skdeita vs the two reference implementations.

Runs, in one process and on the same data:

- ``distilabel``: distilabel ``DeitaFiltering``'s dense rule (two n x n
  float64 matrices, nearest neighbour over the whole input);
- ``deita-loop``: the DEITA repository's one-row loop (each candidate
  re-gathers the kept pool and compares with it);
- ``skdeita``: :func:`skdeita.deita_select` in both modes.

Each time is the best of ``--repeats`` runs; peak extra memory is tracemalloc's
peak (numpy reports its buffers to it) in a separate run. Then, in a fresh
subprocess, the 1,000,000-row run measures wall time and peak RSS.

    python benchmarks/bench_selection.py            # both parts
    python benchmarks/bench_selection.py --no-large # the comparison only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from skdeita import deita_select

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"


def distilabel_dense(emb, scores, budget, threshold):
    """distilabel DeitaFiltering: nearest other row of the whole input."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dist = 1 - unit @ unit.T  # n x n, then a second n x n below
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if nearest[i] >= threshold:
            kept.append(int(i))
            if len(kept) == budget:
                break
    return kept


def deita_loop(emb, scores, budget, threshold):
    """hkust-nlp/deita's filter with batch_size=1: one Python step a candidate."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    kept, kept_vectors = [], []
    for i in np.argsort(-scores, kind="stable"):
        if kept_vectors:
            pool = np.stack(kept_vectors)  # re-gathered every step, as there
            if (pool @ unit[i]).max() > 1 - threshold:
                continue
        kept.append(int(i))
        kept_vectors.append(unit[i])
        if len(kept) == budget:
            break
    return kept


def skdeita_selected(emb, scores, budget, threshold):
    return deita_select(
        emb, scores, data_budget=budget, diversity_threshold=threshold
    ).selected.tolist()


def skdeita_dataset(emb, scores, budget, threshold):
    return deita_select(
        emb, scores, data_budget=budget, diversity_threshold=threshold, neighbors="dataset"
    ).selected.tolist()


def make_data(n, dim, seed=0):
    """Real MiniLM embeddings (plus near-duplicate copies) when available."""
    rng = np.random.default_rng(seed)
    path = ALPACA / "embeddings_minilm_l6.npy"
    if path.exists() and dim == 384:
        real = np.load(path)
        base = real[rng.permutation(len(real))[: min(n, len(real))]]
        extra = n - len(base)
        if extra > 0:  # near-duplicates of random real rows
            copies = base[rng.integers(0, len(base), extra)]
            copies = copies + 0.02 * rng.standard_normal(copies.shape, dtype=np.float32)
            base = np.vstack([base, copies])
        source = "alpaca_eval MiniLM embeddings + near-duplicates"
    else:
        centers = rng.standard_normal((max(1, n // 20), dim), dtype=np.float32)
        base = centers[rng.integers(0, len(centers), n)]
        base += 0.15 * rng.standard_normal(base.shape, dtype=np.float32)
        source = "synthetic clusters"
    scores = rng.uniform(1, 6, n) * rng.uniform(1, 6, n)
    return base.astype(np.float32), scores, source


def timed(fn, *args, repeats=1):
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_extra_memory(fn, *args):
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def compare(n, dim, budget, threshold, repeats):
    emb, scores, source = make_data(n, dim)
    print(f"\n## n={n:,} d={dim} budget={budget:,} threshold={threshold} ({source})\n")
    rows = []
    results = {}
    runs = [
        ("distilabel dense rule", distilabel_dense),
        ("DEITA one-row loop", deita_loop),
        ("skdeita selected", skdeita_selected),
        ("skdeita dataset", skdeita_dataset),
    ]
    for name, fn in runs:
        seconds, kept = timed(fn, emb, scores, budget, threshold, repeats=repeats)
        peak = peak_extra_memory(fn, emb, scores, budget, threshold)
        results[name] = kept
        rows.append((name, seconds, peak, len(kept)))
    assert results["skdeita selected"] == results["DEITA one-row loop"], "paper rule differs"
    assert results["skdeita dataset"] == results["distilabel dense rule"], "dataset rule differs"
    by = {r[0]: r for r in rows}
    print("| implementation | time (s) | peak extra memory (MB) | kept |")
    print("|---|---:|---:|---:|")
    for name, seconds, peak, kept in rows:
        print(f"| {name} | {seconds:.3f} | {peak / 2**20:.1f} | {kept:,} |")
    sk, sd = by["skdeita selected"], by["skdeita dataset"]
    loop, dense = by["DEITA one-row loop"], by["distilabel dense rule"]
    print("\n| ratio | value |\n|---|---:|")
    print(f"| speed-up vs DEITA loop (same selection) | {loop[1] / sk[1]:.1f}x |")
    print(f"| speed-up vs distilabel dense (skdeita selected) | {dense[1] / sk[1]:.1f}x |")
    print(f"| speed-up vs distilabel dense (same selection) | {dense[1] / sd[1]:.1f}x |")
    print(f"| less peak memory vs dense (skdeita selected) | {dense[2] / sk[2]:.0f}x |")
    print(f"| less peak memory vs dense (same selection) | {dense[2] / sd[2]:.0f}x |")


def large(n, dim, budget, threshold, cluster):
    """Runs in a fresh process so its peak RSS is its own."""
    code = f"""
import json, time, numpy as np
from skdeita import deita_select

def peak_rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM"))

rng = np.random.default_rng(0)
centers = rng.standard_normal(({n} // {cluster}, {dim}), dtype=np.float32)
labels = rng.integers(0, len(centers), {n})
emb = np.empty(({n}, {dim}), dtype=np.float32)
for s in range(0, {n}, 65536):  # in chunks: no full-size temporaries
    e = min(s + 65536, {n})
    emb[s:e] = centers[labels[s:e]]
    emb[s:e] += 0.2 * rng.standard_normal((e - s, {dim}), dtype=np.float32)
scores = rng.uniform(1, 6, {n}) * rng.uniform(1, 6, {n})
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak-RSS mark: count selection only
before = peak_rss()
t = time.perf_counter()
res = deita_select(emb, scores, data_budget={budget}, diversity_threshold={threshold})
sec = time.perf_counter() - t
print(json.dumps(dict(seconds=sec, peak=peak_rss(), before=before, matrix=emb.nbytes,
      kept=len(res.selected), visited=int(res.n_visited))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"large run failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"\n## n={n:,} d={dim} float32, budget={budget:,}, threshold={threshold} "
        f"(synthetic: {n // cluster:,} clusters of ~{cluster} near-duplicates)\n"
    )
    print(
        "| time (s) | rows visited | kept | matrix (GB) | RSS before (GB) "
        "| peak RSS (GB) | peak / matrix |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    gb = 2**30
    print(
        f"| {r['seconds']:.1f} | {r['visited']:,} | {r['kept']:,} | {r['matrix'] / gb:.2f} "
        f"| {r['before'] / gb:.2f} | {r['peak'] / gb:.2f} "
        f"| {r['peak'] / r['matrix']:.2f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--budget", type=int, default=2_000)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-n", type=int, default=1_000_000)
    parser.add_argument("--large-budget", type=int, default=10_000)
    parser.add_argument("--no-large", action="store_true")
    args = parser.parse_args()
    print(f"# bench_selection ({resource.getpagesize()}-byte pages, numpy {np.__version__})")
    compare(args.n, args.dim, args.budget, args.threshold, args.repeats)
    if not args.no_large:
        # Easy: budget filled early. Hard: fewer clusters than the budget, so
        # the walk must visit every row.
        for cluster in (50, 200):
            large(args.large_n, args.dim, args.large_budget, args.threshold, cluster)


if __name__ == "__main__":
    main()
