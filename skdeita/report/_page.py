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

import pandas as pd
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions, validate_params

from ..exceptions import BudgetNotReachedWarning
from ..selection import DeitaSelector
from ..selection._distances import SUPPORTED_METRICS
from ..utils._validation import check_dataframe
from . import _sections
from ._outcomes import is_annotated, row_status, text_columns

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
    if _used_reference(manifest):
        notes.append(
            "The selection was made against reference rows (reference=...), which this "
            "file does not hold: the threshold curve is computed without them."
        )
    if not is_annotated(data):
        data = _select(data, settings, embedding_col, instruction_score_col, response_score_col)
        notes.append("The input is a pool: it was selected here with the settings shown.")
    status = row_status(data)
    if settings["data_budget"] is None and origin["data_budget"] == "default":
        # An annotated output whose budget was filled: the budget is the kept count.
        if (status == "over_budget").any():
            settings["data_budget"] = int((status == "kept").sum())
            origin["data_budget"] = "inferred (rows kept, as rows were left over budget)"
    top = _sections.settings_table(data, settings, origin) + _sections.outcomes(status)
    sections = [
        _header(title, notes),
        f'<div class="grid top">{top}</div>',
        _sections.scores(data, status, instruction_score_col, response_score_col),
        _sections.curve(data, status, settings, embedding_col, threshold_curve),
        _sections.embedding_map(data, status, embedding_col, settings, max_map_points),
        _sections.pairs(data, status, settings, embedding_col, texts, n_pairs),
        _sections.manifest(manifest),
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


def _used_reference(manifest) -> bool:
    for params in ((manifest or {}).get("parameters") or {}).values():
        if isinstance(params, dict) and params.get("estimator") == "DeitaSelector":
            return params.get("reference") is not None
    return False


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


def _header(title, notes) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    extra = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (
        f"<h1>{escape(title or 'skdeita curation report')}</h1>"
        f'<p class="sub">DEITA selection: score first, then diversity. Written {when}.</p>' + extra
    )
