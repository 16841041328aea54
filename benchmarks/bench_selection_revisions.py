"""Selection speed of this checkout against another revision, side by side.

A change to the selection must not make it slower (the one selection flow
and the attribution of blocked rows were held to that). This script times
the same calls on the same data with two source trees: this one and one
given with ``--old`` (for example a ``git worktree`` of an earlier commit).
Every measurement runs in its own subprocess with ``PYTHONPATH`` set to the
tree under test, and the trees alternate inside each repeat, so load on a
shared machine hits both alike; each subprocess makes one warm-up call
(one-time imports are not the selection's speed) and times the next; each
figure is the best of ``--repeats``.
The selected rows are asserted identical between the trees.

    git worktree add /tmp/skdeita-before <commit>
    python benchmarks/bench_selection_revisions.py --old /tmp/skdeita-before

Calls timed: :func:`skdeita.deita_select` (the walk alone) and
``DeitaSelector.fit_transform`` on a DataFrame with ``output="subset"``
(the kept rows) and ``output="annotate"`` (every row, with whatever that
tree's annotation holds: since attribution, each row's outcome and the row
that blocked it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
NEW = HERE.parents[1]

CASES = {
    # name: (rows, clusters or None for AlpacaEval's MiniLM embeddings, budget, rule)
    "alpaca 20k, paper rule": (20_000, None, 2_000, "selected"),
    "alpaca 20k, dataset rule": (20_000, None, 2_000, "dataset"),
    "100k, budget reached (clusters of 50)": (100_000, 2_000, 1_500, "selected"),
    "100k, every row visited (clusters of 200)": (100_000, 500, 5_000, "selected"),
}

CHILD = r"""
import json, time
import numpy as np, pandas as pd
import skdeita
from bench_selection import make_data
assert skdeita.__file__.startswith({tree!r}), skdeita.__file__

n, clusters, budget, rule, call, threshold = {args!r}
if clusters is None:
    emb, scores, _ = make_data(n, 384)
else:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((clusters, 384), dtype=np.float32)
    emb = centers[rng.integers(0, clusters, n)]
    emb += 0.2 * rng.standard_normal(emb.shape, dtype=np.float32)
    scores = rng.uniform(1, 6, n) * rng.uniform(1, 6, n)
if call == "deita_select":
    def once():
        return skdeita.deita_select(emb, scores, data_budget=budget,
            diversity_threshold=threshold, neighbors=rule)
else:
    frame = pd.DataFrame({{"embedding": list(emb), "evol_instruction_score": scores,
                          "evol_response_score": np.ones(n)}})
    def once():
        return skdeita.DeitaSelector(budget, diversity_threshold=threshold,
            neighbors=rule, output=call, show_progress_bar=False).fit_transform(frame)
once()  # warm-up: one-time imports and first-use costs are not the walk's
start = time.perf_counter()
out = once()
seconds = time.perf_counter() - start
if call == "deita_select":
    kept = out.selected.tolist()
elif call == "annotate":
    kept = [int(i) for i in out[out["deita_selected"]].sort_values("deita_rank").index]
else:
    kept = [int(i) for i in out.index]
print(json.dumps({{"seconds": seconds, "kept": kept}}))
"""


def run(tree: Path, args: tuple) -> dict:
    code = CHILD.format(tree=str(tree), args=args)
    env = dict(os.environ, PYTHONPATH=str(tree))
    # Run from benchmarks/ (for bench_selection's data): the current folder
    # comes first on sys.path, and the repository root would shadow PYTHONPATH.
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=HERE.parent, capture_output=True, text=True
    )
    if out.returncode:
        sys.exit(f"the run with {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other source tree")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    opts = parser.parse_args()
    old = opts.old.resolve()
    print(f"old: {old}\nnew: {NEW}\n")
    print("| case | call | old (s) | new (s) | new / old |")
    print("|---|---|---:|---:|---:|")
    for name, (n, clusters, budget, rule) in CASES.items():
        if opts.only not in name:
            continue
        for call in ("deita_select", "subset", "annotate"):
            best = {old: float("inf"), NEW: float("inf")}
            kept = {}
            for _ in range(opts.repeats):
                for tree in (old, NEW):
                    result = run(tree, (n, clusters, budget, rule, call, opts.threshold))
                    best[tree] = min(best[tree], result["seconds"])
                    kept[tree] = result["kept"]
            assert kept[old] == kept[NEW], f"{name}, {call}: the trees select different rows"
            print(
                f"| {name} | {call} | {best[old]:.3f} | {best[NEW]:.3f} "
                f"| {best[NEW] / best[old]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
