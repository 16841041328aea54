"""float32 against bfloat16: how far scores, embeddings and the selection move.

Not a timing: the same rows through the same models in both dtypes, and the
differences. Models: the tiny random Llama scorers the tests use (seeds 0 and
1, built here) and the packaged all-MiniLM-L6-v2. Rows: the built-in sample
(320 rows), or ``--alpaca N`` AlpacaEval rows from ../shared/data.

    python benchmarks/bench_dtype.py
    python benchmarks/bench_dtype.py --device cuda      # bfloat16 kernels of a GPU

A random tiny scorer is no DEITA scorer: its scale tells how much bfloat16's
8-bit mantissa moves an expected digit, not what a trained 13B model does.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from skdeita import ComplexityScorer, DeitaSelector, EmbeddingTransformer, QualityScorer
from skdeita._testing import make_tiny_llama_scorer
from skdeita.datasets import load_sample

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"


def rows(alpaca: int) -> pd.DataFrame:
    if not alpaca:
        return load_sample()[["instruction", "response"]]
    frames = [pd.read_json(p) for p in sorted(RESULTS.glob("*.json"))]
    pool = pd.concat(frames, ignore_index=True).rename(columns={"output": "response"})
    return pool[["instruction", "response"]].head(alpaca)


def score(pool, models, dtype, device):
    common = dict(dtype=dtype, device=device, show_progress_bar=False, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation of long rows: the same in both dtypes
        out = ComplexityScorer(models[0], max_length=192, **common).fit_transform(pool)
        out = QualityScorer(models[1], max_length=192, **common).fit_transform(out)
    embed = EmbeddingTransformer(
        template="{instruction}\n\n{response}", dtype=dtype, device=device, show_progress_bar=False
    )
    return embed.fit_transform(out)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--alpaca", type=int, default=0, help="AlpacaEval rows instead")
    args = parser.parse_args()
    pool = rows(args.alpaca)
    with tempfile.TemporaryDirectory() as tmp:
        models = [
            str(make_tiny_llama_scorer(Path(tmp) / f"scorer{seed}", seed=seed)) for seed in (0, 1)
        ]
        full = score(pool, models, "float32", args.device)
        half = score(pool, models, "bfloat16", args.device)

    print(f"{len(pool)} rows on {args.device}: bfloat16 minus float32\n")
    print(f"{'quantity':<34}{'max |diff|':>12}{'mean |diff|':>13}{'Spearman':>10}")
    for col in ("evol_instruction_score", "evol_response_score"):
        a, b = full[col].to_numpy(), half[col].to_numpy()
        diff = np.abs(a - b)
        rho = spearmanr(a, b).statistic
        print(f"{col + ' (1-6)':<34}{diff.max():>12.4f}{diff.mean():>13.4f}{rho:>10.4f}")
    deita = [f.evol_instruction_score * f.evol_response_score for f in (full, half)]
    diff = np.abs(deita[0] - deita[1])
    rho = spearmanr(deita[0], deita[1]).statistic
    print(f"{'deita_score (1-36)':<34}{diff.max():>12.4f}{diff.mean():>13.4f}{rho:>10.4f}")
    e32, e16 = (unit(np.stack(f["embedding"])) for f in (full, half))
    cos = np.sum(e32 * e16, axis=1)
    print(f"{'MiniLM: 1 - cos(fp32, bf16)':<34}{(1 - cos).max():>12.2e}{(1 - cos).mean():>13.2e}")
    d32, d16 = 1 - e32 @ e32.T, 1 - e16 @ e16.T
    dd = np.abs(d32 - d16)[np.triu_indices(len(pool), 1)]
    print(f"{'MiniLM: pairwise cosine distance':<34}{dd.max():>12.2e}{dd.mean():>13.2e}")

    print(f"\n{'selection (threshold 0.1)':<34}{'budget':>8}{'kept alike':>12}{'same order':>12}")
    for budget in (10, 32, 100):
        kept = []
        for frame in (full, half):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kept.append(DeitaSelector(budget, show_progress_bar=False).fit_transform(frame))
        alike = len(set(kept[0].index) & set(kept[1].index))
        same = list(kept[0].index) == list(kept[1].index)
        print(f"{'':<34}{budget:>8}{f'{alike}/{len(kept[0])}':>12}{str(same):>12}")
    # Scores held fixed (float32): what the embedder's dtype alone changes.
    mixed = full.assign(embedding=half["embedding"])
    alike = []
    for budget in (10, 32, 100):
        a = DeitaSelector(budget, show_progress_bar=False).fit_transform(full).index
        b = DeitaSelector(budget, show_progress_bar=False).fit_transform(mixed).index
        alike.append(f"{len(set(a) & set(b))}/{len(a)}")
    print(f"{'  embeddings only in bfloat16':<34}{'':>8}{', '.join(alike):>24}")


if __name__ == "__main__":
    main()
