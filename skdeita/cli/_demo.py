"""``skdeita demo``: curate the embedded sample with the packaged MiniLM."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from ._common import budget_arg, threshold_arg


def _verdict(row, threshold: float) -> str:
    if row["deita_selected"]:
        return "kept"
    if pd.isna(row["nearest_neighbor_distance"]):
        return "not reached: budget filled"
    return f"dropped: {row['nearest_neighbor_distance']:.3f} < {threshold} from a kept row"


def run_demo(output_dir: Path, *, budget: int | float = 100, threshold: float = 0.1) -> int:
    """Embed, select, print what was kept and why, and save the plots."""
    from sklearn.pipeline import make_pipeline

    from .. import DeitaSelector, EmbeddingTransformer
    from ..datasets import load_sample

    pool = load_sample()
    print(
        f"Sample pool: {len(pool)} rows (see skdeita.datasets.load_sample); "
        f"budget {budget}, diversity_threshold {threshold} (cosine distance)."
    )
    embedder = EmbeddingTransformer(template="{instruction}\n\n{response}")
    selector = DeitaSelector(data_budget=budget, diversity_threshold=threshold, output="annotate")
    started = time.time()
    pipeline = make_pipeline(embedder, selector)
    out = pipeline.fit_transform(pool)
    finished = time.time()
    print(f"Embedded with {embedder.model_identity_.split('|')[1]} on {embedder.device_}.\n")

    counts = pd.crosstab(out["kind"], out["deita_selected"].map({True: "kept", False: "dropped"}))
    print("What was kept, by kind of row:\n")
    print(counts.reindex(columns=["kept", "dropped"], fill_value=0).to_string(), "\n")

    visited = out[out["nearest_neighbor_distance"].notna()]
    # The walk's first steps, in the order it took them (best score first).
    show = visited.sort_values("deita_score", ascending=False, kind="stable").head(14)
    table = pd.DataFrame(
        {
            "rank": show["deita_rank"].astype("string").fillna("-"),
            "kind": show["kind"],
            "score": show["deita_score"].round(2),
            "why": [_verdict(r, threshold) for _, r in show.iterrows()],
            "instruction": [textwrap.shorten(t, 52) for t in show["instruction"]],
        }
    )
    print("The first rows the walk visited, best score first, and what happened to them:\n")
    print(table.to_string(index=False), "\n")
    print(
        f"Kept {selector.n_selected_} of {len(pool)} rows; budget {selector.budget_} "
        f"{'reached' if selector.budget_reached_ else 'NOT reached'}; "
        f"{selector.n_visited_} rows examined."
    )

    output_dir.mkdir(parents=True, exist_ok=True)
    table = output_dir / "selection.csv"
    out.drop(columns="embedding").to_csv(table)
    manifest = _write_manifest(pipeline, pool, out, table, started, finished)
    report = _write_report(out, output_dir / "report.html", manifest)
    print(f"Selection table: {table}")
    print(f"Run manifest:    {manifest}")
    print(f"Report page:     {report}  (one HTML file: open it in any browser)")
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("Install the plot extra (pip install 'skdeita[plot]') to get the PNG plots.")
        return 0
    from ..plotting import plot_selection_map, plot_threshold_curve

    ax = plot_selection_map(out)
    ax.figure.savefig(output_dir / "selection_map.png", dpi=120, bbox_inches="tight")
    ax = plot_threshold_curve(out[pool.columns.tolist() + ["embedding"]], selector)
    ax.figure.savefig(output_dir / "threshold_curve.png", dpi=120, bbox_inches="tight")
    print(f"Selection plot:  {output_dir / 'selection_map.png'}")
    print(f"Threshold curve: {output_dir / 'threshold_curve.png'}")
    return 0


def _write_manifest(pipeline, pool, out, table: Path, started, finished) -> Path:
    """The run's manifest, beside the selection table it describes."""
    from ..report import build_manifest, write_manifest

    manifest = build_manifest(
        pipeline,
        pool,
        out,
        output_path=table,
        started=started,
        finished=finished,
        command=["skdeita", *sys.argv[1:]] if sys.argv[1:2] == ["demo"] else ["skdeita", "demo"],
    )
    manifest["input"]["path"] = "skdeita.datasets.load_sample()"
    return write_manifest(manifest, table)


def _write_report(out, path: Path, manifest: Path) -> Path:
    from ..report import write_report

    return write_report(out, path, manifest=str(manifest), title="skdeita demo: the sample pool")


def add_parser(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="curate the embedded sample and plot the selection",
        description="Curate the built-in sample pool with the packaged all-MiniLM-L6-v2 (no "
        "network needed), print what was kept and why, and write the selection, its "
        "manifest, the report page and two plots.",
    )
    demo.add_argument(
        "--output-dir", default="skdeita_demo_output", help="folder for the files written"
    )
    demo.add_argument("--budget", type=budget_arg, default=100, help="rows to keep")
    demo.add_argument(
        "--threshold", type=threshold_arg, default=0.1, help="diversity distance (cosine)"
    )
    demo.set_defaults(run=run)


def run(args) -> int:
    return run_demo(Path(args.output_dir), budget=args.budget, threshold=args.threshold)
