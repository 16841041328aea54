"""The sections of the report page: settings, outcomes, scores, threshold
curve, map, closest blocked pairs, manifest. Each returns HTML text in which
everything taken from the data is escaped."""

from __future__ import annotations

import json
from html import escape
from numbers import Integral, Real

import numpy as np
import pandas as pd

from ..selection import threshold_table
from . import _svg
from ._outcomes import COLORS, LABELS, OUTCOMES, closest_blocked, row_text

_SHOWN_CHARS = 700  # of a row's text in the pairs table; the rest in <details>
_MAX_CHARS = 20_000


def _figure(svg: str, caption: str, name: str, wide: bool = False) -> str:
    kind = ' class="wide"' if wide else ""
    return f'<figure id="fig-{name}"{kind}>{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def settings_table(data, settings, origin) -> str:
    budget = settings["data_budget"]
    metric = settings["distance_metric"]
    rows = [
        ("rows", f"{len(data):,}", ""),
        ("budget", "no limit" if budget is None else f"{budget}", origin["data_budget"]),
        (
            "diversity threshold",
            f"{settings['diversity_threshold']}",
            origin["diversity_threshold"],
        ),
        ("distance metric", getattr(metric, "__name__", str(metric)), origin["distance_metric"]),
        (
            "normalised embeddings",
            str(settings["normalize_embeddings"]),
            origin["normalize_embeddings"],
        ),
        ("neighbors", f"{settings['neighbors']}", origin["neighbors"]),
    ]
    cells = "".join(
        f'<tr><th>{escape(k)}</th><td>{escape(v)}</td><td class="note">{escape(o)}</td></tr>'
        for k, v, o in rows
    )
    return f"<section><h2>Settings</h2><table>{cells}</table></section>"


def outcomes(status) -> str:
    counts = [(LABELS[k], int((status == k).sum()), COLORS[k]) for k in OUTCOMES]
    total = max(len(status), 1)
    svg = _svg.stacked_bar(counts, "Rows per outcome")
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{color}"></span>{escape(name)}</td>'
        f'<td class="num">{count:,}</td><td class="num">{100 * count / total:.1f}%</td></tr>'
        for name, count, color in counts
    )
    meaning = (
        "kept: selected. blocked: visited, and too close to a neighbour row. over budget: "
        "never visited, the budget was filled first. excluded: no score (or no embedding)."
    )
    return (
        "<section><h2>Outcomes</h2>"
        f'<table><tr><th>outcome</th><th class="num">rows</th><th class="num">share</th></tr>'
        f"{rows}</table>" + _figure(svg, meaning, "outcomes") + "</section>"
    )


def _per_row(series: pd.Series) -> np.ndarray:
    """Float scores per row; a per-turn list counts as its mean."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    out = np.full(len(series), np.nan)
    for i, v in enumerate(series.tolist()):
        if isinstance(v, list | tuple | np.ndarray) and len(v):
            try:
                out[i] = float(np.mean(np.asarray(v, dtype=float)))
            except (TypeError, ValueError):
                pass
        elif isinstance(v, Real) and not isinstance(v, bool):
            out[i] = float(v)
    return out


def scores(data, status, instruction_col, response_col) -> str:
    kept = status == "kept"
    figures, missing = [], []
    for col, what in (
        (instruction_col, "complexity"),
        (response_col, "quality"),
        ("deita_score", "deita score"),
    ):
        if col is None or col not in data.columns:
            missing.append(what)
            continue
        values = _per_row(data[col])
        svg = _svg.histogram(values, values[kept], f"{what}: pool vs kept", f"{what} ({col})")
        caption = f"{what}: share of the pool's rows (grey) and of the kept rows (blue) per bin."
        figures.append(_figure(svg, caption, f"score-{what.replace(' ', '-')}"))
    note = f'<p class="note">No column for {", ".join(missing)}.</p>' if missing else ""
    return "<h2>Scores</h2>" + f'<div class="grid">{"".join(figures)}</div>' + note


def _usable(data, embedding_col, status) -> np.ndarray:
    """Rows that took part in the selection and have an embedding."""
    ok = status != "excluded"
    if embedding_col not in data.columns:
        return np.zeros(len(data), dtype=bool)
    cells = data[embedding_col].to_numpy(dtype=object)
    return ok & np.array([isinstance(c, list | tuple | np.ndarray) for c in cells], dtype=bool)


def curve(data, status, settings, embedding_col, enabled) -> str:
    head = "<h2>Threshold curve</h2>"
    if not enabled:
        return head + '<p class="note">Not drawn (threshold_curve=False, or --no-curve).</p>'
    rows = np.flatnonzero(_usable(data, embedding_col, status))
    if not len(rows) or "deita_score" not in data.columns:
        what = f"embeddings in column {embedding_col!r}" if not len(rows) else "deita_score"
        return head + f'<p class="note">No {escape(what)}: no curve.</p>'
    threshold = float(settings["diversity_threshold"])
    cells = data[embedding_col].to_numpy(dtype=object)[rows]
    scores = data["deita_score"].to_numpy(dtype=float)[rows]
    result = threshold_table(
        list(cells),
        scores,
        data_budget=settings["data_budget"],
        diversity_threshold=threshold,
        distance_metric=settings["distance_metric"],
        normalize_embeddings=settings["normalize_embeddings"],
        neighbors=settings["neighbors"],
    )
    table = result.table
    marks = [(threshold, f"chosen {threshold:g}", "#111")]
    if result.deita_threshold is not None and not np.isclose(result.deita_threshold, threshold):
        marks.append((result.deita_threshold, "DEITA sim. 0.9", "#009E73"))
    hline = (
        None if settings["data_budget"] is None else (result.budget, f"budget {result.budget:,}")
    )
    svg = _svg.line_chart(
        table["threshold"].to_numpy(),
        # Rows kept only: blocked counts grow with the pool and would flatten
        # the kept line; the table below has them.
        [("rows kept", table["kept"].to_numpy(), COLORS["kept"])],
        "Rows kept per threshold",
        f"diversity threshold ({result.metric} distance)",
        "rows",
        marks=marks,
        hline=hline,
    )
    caption = (
        f"The selection rerun at {len(table)} thresholds ({result.neighbors!r} rule). "
        f"DEITA's similarity 0.9 is {_num(result.deita_threshold)} here; distilabel's "
        f"default (0.9 distance) is {_num(result.distilabel_threshold)}."
    )
    header = "".join(f'<th class="num">{escape(c.replace("_", " "))}</th>' for c in table.columns)
    body = "".join(
        "<tr"
        + (' style="font-weight:600"' if np.isclose(r.threshold, threshold) else "")
        + ">"
        + "".join(f'<td class="num">{escape(_num(v))}</td>' for v in r)
        + "</tr>"
        for r in table.itertuples(index=False)
    )
    return head + _figure(svg, caption, "threshold", wide=True) + f"<table>{header}{body}</table>"


def _num(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        return "–" if not np.isfinite(value) else f"{float(value):.4g}"
    return str(value)


def embedding_map(data, status, embedding_col, settings, max_points) -> str:
    from sklearn.decomposition import PCA

    head = "<h2>Map of the embeddings</h2>"
    if embedding_col not in data.columns:
        return head + '<p class="note">No embedding column: no map.</p>'
    has_vector = np.array(
        [isinstance(c, list | tuple | np.ndarray) for c in data[embedding_col].tolist()],
        dtype=bool,
    )
    if not has_vector.any():
        return head + '<p class="note">No row has an embedding: no map.</p>'
    chosen = _sample(status, has_vector, max_points)
    vectors = np.stack([np.asarray(c, dtype=np.float64) for c in data[embedding_col].iloc[chosen]])
    if settings["normalize_embeddings"]:
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-300)
    if len(vectors) > 2 and vectors.shape[1] >= 2:
        xy = PCA(n_components=2, random_state=0).fit_transform(vectors)
    else:
        xy = np.zeros((len(vectors), 2))
    shown = status[chosen]
    groups = [
        (LABELS[k], shown == k, COLORS[k])
        for k in ("over_budget", "excluded", "blocked", "kept")
        if (shown == k).any()
    ]
    labels = [f"{data.index[i]} ({LABELS[status[i]]})" for i in chosen]
    svg = _svg.scatter(xy, groups, "Embeddings, first two principal components", labels=labels)
    total = int(has_vector.sum())
    if len(chosen) < total:
        parts = ", ".join(
            f"{int((shown == k).sum()):,} of {int(((status == k) & has_vector).sum()):,} "
            f"{LABELS[k]}"
            for k in OUTCOMES
            if ((status == k) & has_vector).any()
        )
        caption = (
            f"A sample of {len(chosen):,} of {total:,} rows ({parts}; random, seed 0; "
            "kept rows up to half the sample). PCA fitted on the sample."
        )
    else:
        caption = f"All {total:,} rows with an embedding. PCA of the embeddings."
    return head + _figure(svg, caption, "map", wide=True)


def _sample(status, has_vector, max_points) -> np.ndarray:
    """At most ``max_points`` rows: kept rows up to half, the rest in proportion."""
    rows = np.flatnonzero(has_vector)
    if len(rows) <= max_points:
        return rows
    rng = np.random.default_rng(0)
    kept = rows[status[rows] == "kept"]
    other = rows[status[rows] != "kept"]
    n_kept = min(len(kept), max_points // 2)
    n_other = min(len(other), max_points - n_kept)
    n_kept = min(len(kept), max_points - n_other)
    take = np.concatenate(
        [rng.choice(kept, n_kept, replace=False), rng.choice(other, n_other, replace=False)]
    )
    return np.sort(take)


def pairs(data, status, settings, embedding_col, texts, n) -> str:
    head = f"<h2>The {n} closest blocked pairs</h2>"
    pairs = closest_blocked(
        data,
        status,
        n,
        embedding_col=embedding_col,
        distance_metric=settings["distance_metric"],
        normalize_embeddings=settings["normalize_embeddings"],
        neighbors=settings["neighbors"],
    )
    if not pairs:
        return head + '<p class="note">No row was blocked.</p>'
    intro = (
        '<p class="note">What "too similar" means in this data: each blocked row beside '
        "the row that blocked it (under the paper's rule, the nearest row kept before it; "
        "under distilabel's, its nearest other row), closest first.</p>"
    )
    rows = []
    for k, (label, by, distance) in enumerate(pairs, start=1):
        blocker = (
            "unknown"
            if by is None or (isinstance(by, float) and np.isnan(by))
            else (
                f"row {by}" if by in data.index else f"row {by} (not in this file: a reference row)"
            )
        )
        rows.append(
            f'<tr><td class="num">{k}</td><td class="num">{distance:.4f}</td>'
            f'<td class="text"><span class="label">row {escape(str(label))}</span>'
            f"{_text_cell(row_text(data, label, texts))}</td>"
            f'<td class="text"><span class="label">{escape(blocker)}</span>'
            f"{_text_cell(row_text(data, by, texts) if by in data.index else '')}</td></tr>"
        )
    cols = '<colgroup><col class="n"><col class="d"><col><col></colgroup>'
    header = (
        '<tr><th class="num">#</th><th class="num">distance</th><th>blocked row</th>'
        "<th>blocking row</th></tr>"
    )
    return head + intro + f'<table class="pairs">{cols}{header}{"".join(rows)}</table>'


def _text_cell(text: str) -> str:
    if len(text) <= _SHOWN_CHARS:
        return escape(text)
    rest = text[_SHOWN_CHARS:_MAX_CHARS]
    cut = " (cut)" if len(text) > _MAX_CHARS else ""
    return (
        f"{escape(text[:_SHOWN_CHARS])}<details><summary>{len(text):,} characters: "
        f"the rest{cut}</summary>{escape(rest)}</details>"
    )


def manifest(manifest) -> str:
    head = "<h2>Manifest</h2>"
    if manifest is None:
        return head + '<p class="note">No manifest was given for this run.</p>'
    text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str)
    return head + f"<pre>{escape(text)}</pre>"
