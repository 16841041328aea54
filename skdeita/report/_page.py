"""The report page: one self-contained HTML file that shows a curation.

Inline CSS, figures as inline SVG, no script and no request at view time (a
Content-Security-Policy forbids both). Everything taken from the data (texts,
labels, column names, the manifest) is escaped. Its size does not grow with
the pool: the map shows a sample, the pairs table 20 rows, the histograms 30
bins, so a report of a 1M-row pool opens as fast as one of 1,000 rows.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from datetime import datetime, timezone
from html import escape
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions, validate_params

from ..exceptions import BudgetNotReachedWarning
from ..selection import DeitaSelector, threshold_table
from ..selection._distances import SUPPORTED_METRICS
from ..utils._validation import check_dataframe
from . import _svg
from ._outcomes import (
    COLORS,
    LABELS,
    OUTCOMES,
    closest_blocked,
    is_annotated,
    row_status,
    row_text,
    text_columns,
)

_SHOWN_CHARS = 700  # of a row's text in the pairs table; the rest in <details>
_MAX_CHARS = 20_000

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0; background: #f6f7f9; }
main { max-width: 1120px; margin: 0 auto; padding: 18px 22px 48px; }
h1 { font-size: 1.55em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #555; margin: 0 0 0.8em; }
.note { color: #555; font-size: 0.92em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(330px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 6px;
         padding: 8px; min-width: 0; }
figure svg { display: block; width: 100%; height: auto; }
figure.wide { max-width: 780px; }
figcaption { font-size: 0.9em; color: #444; margin-top: 4px; }
table { border-collapse: collapse; background: #fff; font-size: 0.92em; }
th, td { border: 1px solid #e2e2e2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.pairs { width: 100%; table-layout: fixed; }
table.pairs td.text { white-space: pre-wrap; overflow-wrap: anywhere; }
table.pairs col.n { width: 3em; } table.pairs col.d { width: 6.5em; }
.label { color: #666; font-size: 0.85em; display: block; margin-bottom: 2px; }
pre { background: #fff; border: 1px solid #e2e2e2; padding: 10px; overflow: auto;
      max-height: 420px; font-size: 0.85em; white-space: pre-wrap; overflow-wrap: anywhere; }
.top table { margin-bottom: 8px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 5px; }
"""

_CONSTRAINTS = {
    "data": [pd.DataFrame],
    "manifest": [dict, str, os.PathLike, None],
    "data_budget": [
        Interval(Integral, 1, None, closed="left"),
        Interval(RealNotInt, 0, 1, closed="right"),
        None,
    ],
    "diversity_threshold": [Interval(Real, 0, None, closed="left"), None],
    "distance_metric": [StrOptions(set(SUPPORTED_METRICS)), callable, None],
    "normalize_embeddings": ["boolean", None],
    "neighbors": [StrOptions({"selected", "dataset"}), None],
    "embedding_col": [str],
    "instruction_score_col": [str, None],
    "response_score_col": [str, None],
    "text_cols": [list, tuple, None],
    "max_map_points": [Interval(Integral, 10, None, closed="left")],
    "n_pairs": [Interval(Integral, 0, None, closed="left")],
    "threshold_curve": ["boolean"],
    "title": [str, None],
}
_SELECTION_DEFAULTS = {
    "data_budget": None,
    "diversity_threshold": 0.1,
    "distance_metric": "cosine",
    "normalize_embeddings": True,
    "neighbors": "selected",
}


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
def report_html(
    data: pd.DataFrame,
    *,
    manifest=None,
    data_budget=None,
    diversity_threshold=None,
    distance_metric=None,
    normalize_embeddings=None,
    neighbors=None,
    embedding_col: str = "embedding",
    instruction_score_col: str | None = "evol_instruction_score",
    response_score_col: str | None = "evol_response_score",
    text_cols=None,
    max_map_points: int = 4000,
    n_pairs: int = 20,
    threshold_curve: bool = True,
    title: str | None = None,
) -> str:
    """The report page of a selection, as HTML text (see :func:`write_report`)."""
    check_dataframe(data, "report")
    manifest = _load_manifest(manifest)
    settings, origin = _settings(
        manifest,
        data_budget=data_budget,
        diversity_threshold=diversity_threshold,
        distance_metric=distance_metric,
        normalize_embeddings=normalize_embeddings,
        neighbors=neighbors,
    )
    texts = text_columns(data, None if text_cols is None else list(text_cols))
    notes: list[str] = []
    if not is_annotated(data):
        data = _select(data, settings, embedding_col, instruction_score_col, response_score_col)
        notes.append("The input is a pool: it was selected here with the settings shown.")
    status = row_status(data)
    if settings["data_budget"] is None and origin["data_budget"] == "default":
        # An annotated output whose budget was filled: the budget is the kept count.
        if (status == "over_budget").any():
            settings["data_budget"] = int((status == "kept").sum())
            origin["data_budget"] = "inferred (rows kept, as rows were left over budget)"
    sections = [
        _header(title, notes),
        f'<div class="grid top">{_settings_table(data, settings, origin)}{_outcomes(status)}</div>',
        _scores(data, status, instruction_score_col, response_score_col),
        _curve(data, status, settings, embedding_col, threshold_curve),
        _map(data, status, embedding_col, settings, max_map_points),
        _pairs(data, status, settings, embedding_col, texts, n_pairs),
        _manifest(manifest),
    ]
    return _page(title or "skdeita curation report", "".join(sections))


def write_report(data: pd.DataFrame, path: str | os.PathLike, **kwargs) -> Path:
    """Write the report page of a selection to ``path`` (one HTML file).

    Parameters
    ----------
    data : DataFrame
        An annotated selection (``DeitaSelector(output="annotate")``: every
        row with ``deita_status``, ``deita_score``,
        ``nearest_neighbor_distance``, ``deita_blocked_by`` and the input's
        columns), or a pool (embedding and score columns), which is selected
        first with the settings given.
    path : path-like
        The HTML file to write (atomically: complete or not at all).
    manifest : dict, path-like or None, default=None
        The run's manifest (see :func:`build_manifest`), shown on the page; its
        selection parameters are used where none is given here.
    data_budget, diversity_threshold, distance_metric, normalize_embeddings, neighbors
        The selection's settings (default: the manifest's, else
        ``DeitaSelector``'s defaults; an annotated output's budget is its kept
        count when rows were left over budget). The threshold is marked on the
        threshold curve.
    embedding_col, instruction_score_col, response_score_col : str
        The columns of the embeddings and of the two scores.
    text_cols : list of str or None, default=None
        Columns shown as a row's text in the pairs table (default: those of
        instruction, input, response, output, prompt, text, conversations,
        messages that exist).
    max_map_points : int, default=4000
        Rows drawn on the map at most (a sample, said on the page).
    n_pairs : int, default=20
        Closest blocked pairs shown.
    threshold_curve : bool, default=True
        Draw the threshold curve: the selection rerun at a grid of thresholds
        (one walk, :func:`~skdeita.threshold_table`); its cost grows with the pool.
    title : str or None, default=None
        The page title.

    Returns
    -------
    path : Path
        The file written.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from skdeita.report import write_report
    >>> pool = pd.DataFrame({"instruction": ["a", "b <script>", "c"],
    ...                      "embedding": [[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]],
    ...                      "evol_instruction_score": [3.0, 2.0, 1.0],
    ...                      "evol_response_score": [1.0, 1.0, 1.0]})
    >>> path = write_report(pool, os.path.join(tempfile.mkdtemp(), "report.html"))
    >>> text = path.read_text()
    >>> "b &lt;script&gt;" in text, "<script" in text
    (True, False)
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"report path {path}: folder {target.parent} does not exist.")
    html = report_html(data, **kwargs)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


# -- settings -------------------------------------------------------------------------


def _load_manifest(manifest) -> dict | None:
    if manifest is None or isinstance(manifest, dict):
        return manifest
    try:
        return json.loads(Path(manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"manifest {manifest}: cannot read it as JSON ({exc}).") from None


def _settings(manifest, **given) -> tuple[dict, dict]:
    """The selection settings: given here, else the manifest's, else the defaults;
    and where each came from (said on the page)."""
    recorded = {}
    for params in ((manifest or {}).get("parameters") or {}).values():
        if isinstance(params, dict) and params.get("estimator") == "DeitaSelector":
            recorded = params
    settings, origin = {}, {}
    for name, default in _SELECTION_DEFAULTS.items():
        if given[name] is not None:
            settings[name], origin[name] = given[name], "given"
        elif name in recorded:
            settings[name], origin[name] = recorded[name], "manifest"
        else:
            settings[name], origin[name] = default, "default"
    return settings, origin


def _select(data, settings, embedding_col, instruction_col, response_col) -> pd.DataFrame:
    selector = DeitaSelector(
        settings["data_budget"],
        diversity_threshold=settings["diversity_threshold"],
        distance_metric=settings["distance_metric"],
        normalize_embeddings=settings["normalize_embeddings"],
        neighbors=settings["neighbors"],
        embedding_col=embedding_col,
        instruction_score_col=instruction_col,
        response_score_col=response_col,
        output="annotate",
        show_progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        return selector.fit_transform(data)


# -- sections -------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Nothing may run or be fetched: the page is data, shown as text.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _figure(svg: str, caption: str, name: str, wide: bool = False) -> str:
    kind = ' class="wide"' if wide else ""
    return f'<figure id="fig-{name}"{kind}>{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def _header(title, notes) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    extra = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (
        f"<h1>{escape(title or 'skdeita curation report')}</h1>"
        f'<p class="sub">DEITA selection: score first, then diversity. Written {when}.</p>' + extra
    )


def _settings_table(data, settings, origin) -> str:
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


def _outcomes(status) -> str:
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


def _scores(data, status, instruction_col, response_col) -> str:
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


def _curve(data, status, settings, embedding_col, enabled) -> str:
    head = "<h2>Threshold curve</h2>"
    if not enabled:
        return head + '<p class="note">Not drawn (threshold_curve=False, or --no-curve).</p>'
    rows = np.flatnonzero(_usable(data, embedding_col, status))
    if not len(rows) or "deita_score" not in data.columns:
        return head + f'<p class="note">No {escape(embedding_col)!s} column: no curve.</p>'
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
        [
            ("rows kept", table["kept"].to_numpy(), COLORS["kept"]),
            ("rows blocked", table["blocked"].to_numpy(), COLORS["blocked"]),
        ],
        "Rows kept and blocked per threshold",
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


def _map(data, status, embedding_col, settings, max_points) -> str:
    from sklearn.decomposition import PCA

    head = "<h2>Map of the embeddings</h2>"
    if embedding_col not in data.columns:
        return head + '<p class="note">No embedding column: no map.</p>'
    has_vector = np.array(
        [isinstance(c, list | tuple | np.ndarray) for c in data[embedding_col].tolist()]
    )
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


def _pairs(data, status, settings, embedding_col, texts, n) -> str:
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
            f'<tr><td class="num">{k}</td><td class="num">{distance:.4g}</td>'
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


def _manifest(manifest) -> str:
    head = "<h2>Manifest</h2>"
    if manifest is None:
        return head + '<p class="note">No manifest was given for this run.</p>'
    text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str)
    return head + f"<pre>{escape(text)}</pre>"
