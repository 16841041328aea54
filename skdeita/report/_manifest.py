"""The run manifest: what a curated file needs to be reproduced and trusted.

A manifest is a JSON object written beside the output (``<output>.manifest.json``)
after the output is complete, and never for a failed run. It names the
skdeita and library versions, the command and every step's parameters, each
model (name or path, and a SHA-256 of its files), the device and dtype, the
input and output (path, rows, content hash), the count of rows per outcome,
and when the run started and ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ..utils._dask import is_dask_collection
from ..utils._fingerprint import file_digest, files_digest

MANIFEST_VERSION = 1
# Libraries whose version can change a result; those installed are recorded.
LIBRARIES = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "torch",
    "transformers",
    "tokenizers",
    "sentence-transformers",
    "llm-blender",
    "vllm",
    "dask",
    "distributed",
    "pyarrow",
)
OUTCOMES = ("kept", "blocked", "over_budget", "excluded")
# Backends of the model-backed steps that have no ``backend`` parameter.
_DEFAULT_BACKENDS = {
    "ComplexityScorer": "transformers",
    "QualityScorer": "transformers",
    "IFDScorer": "transformers",
    "PairRMRanker": "llm-blender",
}


def manifest_path(output: str | os.PathLike) -> Path:
    """``<output>.manifest.json`` (beside a Parquet folder, not inside it)."""
    target = Path(str(output).rstrip("/" + os.sep))
    return target.with_name(target.name + ".manifest.json")


def library_versions() -> dict[str, str]:
    """Installed versions of skdeita, Python and the libraries that matter."""
    from .. import __version__

    versions = {"skdeita": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def path_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes; for a folder (a Parquet dataset), over
    each file's relative path and SHA-256, in sorted order."""
    path = Path(path)
    if path.is_dir():
        return files_digest(path)
    return file_digest(path)


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 (hex) of a DataFrame's content: index, column names, dtypes and
    values, row by row in order.

    For each of the index and the columns in order: its name and dtype, then
    every value: numbers and booleans as their float64 bytes (NaN and None as
    a NaN marker), text as UTF-8, vectors and lists as their float64 bytes or,
    when not numeric, their JSON text.
    """
    h = hashlib.sha256()
    h.update(f"rows={len(frame)}\0".encode())
    series = [("__index__", frame.index.to_series(index=range(len(frame))))]
    series += [(str(c), frame[c]) for c in frame.columns]
    for name, s in series:
        h.update(f"{name}\0{s.dtype}\0".encode())
        values = s.to_numpy()
        if values.dtype.kind in "biuf":
            h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
            continue
        for v in values.tolist():
            h.update(_cell_bytes(v))
    return h.hexdigest()


def _cell_bytes(value) -> bytes:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return b"\x00N"
    if isinstance(value, str):
        return (
            b"\x00S"
            + len(value.encode("utf-8", "surrogatepass")).to_bytes(8, "little")
            + (value.encode("utf-8", "surrogatepass"))
        )
    if isinstance(value, bool | int | float | np.number):
        return b"\x00F" + np.float64(value).tobytes()
    if isinstance(value, np.ndarray | list | tuple):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return b"\x00V" + str(arr.shape).encode() + arr.astype(np.float64).tobytes()
    text = json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False)
    return b"\x00J" + len(text).to_bytes(8, "little") + text.encode("utf-8", "surrogatepass")


def _jsonable(value):
    """A JSON-ready copy: numpy values as Python ones, frames and arrays summarised."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.DataFrame):
        return {"dataframe": {"rows": len(value), "sha256": frame_digest(value)}}
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value, dtype=np.float64)
        return {"array": {"shape": list(value.shape), "sha256": _sha(arr.tobytes())}}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not np.isfinite(value):
            return repr(value)
        return value
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', value)}"
    return repr(value)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _steps(pipeline) -> list[tuple[str, object]]:
    """``(name, estimator)`` of a Pipeline, or of a list of estimators."""
    steps = getattr(pipeline, "steps", None)
    if steps is None:  # named as make_pipeline names them; repeats get -1, -2, ...
        names = [type(s).__name__.lower() for s in pipeline]
        repeated = {n for n in names if names.count(n) > 1}
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in repeated:
                seen[name] = seen.get(name, 0) + 1
                names[i] = f"{name}-{seen[name]}"
        steps = list(zip(names, pipeline, strict=True))
    return [(name, s) for name, s in steps if s is not None and s != "passthrough"]


def model_identity(name: str, step) -> dict | None:
    """A model-backed step's model: what was asked for, the local folder that
    holds it, a SHA-256 over that folder's files, backend, device, dtype."""
    model = getattr(step, "model", None)
    if model is None:
        return None
    entry = {
        "step": name,
        "estimator": type(step).__name__,
        "model": os.fspath(model) if isinstance(model, str | os.PathLike) else repr(model),
    }
    folder = _model_folder(model)
    entry["path"] = str(folder) if folder is not None else None
    entry["weights_sha256"] = files_digest(folder) if folder is not None else None
    if folder is None:
        entry["note"] = "no local copy found: the weights could not be hashed"
    backbone = getattr(step, "backbone", None)
    if isinstance(backbone, str | os.PathLike) and Path(backbone).is_dir():
        entry["backbone"] = os.fspath(backbone)
        entry["backbone_sha256"] = files_digest(backbone)
    entry["backend"] = getattr(step, "backend", None) or _DEFAULT_BACKENDS.get(type(step).__name__)
    entry["device"] = _text(getattr(step, "device_", None) or getattr(step, "device", None))
    entry["dtype"] = _text(getattr(step, "dtype_", None) or getattr(step, "dtype", None))
    return entry


def _text(value) -> str | None:
    return None if value is None else str(value)


def _model_folder(model) -> Path | None:
    """The local folder a model name or path loads from, if there is one."""
    if not isinstance(model, str | os.PathLike):
        return None  # a model object: no files to hash
    text = os.fspath(model)
    if Path(text).is_dir():
        return Path(text).resolve()
    from ..embedding._backends import resolve_model_name

    resolved = resolve_model_name(text)  # the default MiniLM's packaged copy
    if resolved != text and Path(resolved).is_dir():
        return Path(resolved).resolve()
    try:  # a hub name already in the local Hugging Face cache
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, not a repo name, no hub client
        return None


def outcome_counts(output: pd.DataFrame, selector=None, n_input: int | None = None) -> dict:
    """Rows per outcome: from ``deita_status`` when the output is annotated,
    otherwise from the selector's fitted attributes."""
    if "deita_status" in getattr(output, "columns", ()):
        status = output["deita_status"]
        counts = (
            status.value_counts().compute()
            if is_dask_collection(status)
            else (status.value_counts())
        )
        return {k: int(counts.get(k, 0)) for k in OUTCOMES}
    if selector is None or not hasattr(selector, "n_selected_"):
        return {}
    kept = int(selector.n_selected_)
    visited = int(selector.n_visited_)
    excluded = getattr(selector, "n_excluded_", None)
    if excluded is None and getattr(selector, "missing_scores", "raise") == "raise":
        excluded = 0  # a row with no score would have stopped the run
    counts = {"kept": kept, "blocked": visited - kept}
    if excluded is not None and n_input is not None:
        counts["over_budget"] = n_input - int(excluded) - visited
        counts["excluded"] = int(excluded)
    return counts


def _rows(frame) -> int:
    return int(len(frame))


def _side(path, frame) -> dict:
    """Path, rows and content hash of the input or the output."""
    entry: dict = {"path": None if path is None else os.fspath(path)}
    entry["rows"] = None if frame is None else _rows(frame)
    if path is not None and Path(path).exists():
        entry["sha256"] = path_digest(path)
        entry["hash_of"] = "folder files" if Path(path).is_dir() else "file bytes"
    elif frame is not None and not is_dask_collection(frame):
        entry["sha256"] = frame_digest(frame)
        entry["hash_of"] = "dataframe content (skdeita.report.frame_digest)"
    else:
        entry["sha256"] = None
    return entry


def _timestamp(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    if value.tzinfo is None:
        value = value.astimezone()
    return value.astimezone(timezone.utc).isoformat()


def build_manifest(
    pipeline,
    X=None,
    Xt=None,
    *,
    input_path: str | os.PathLike | None = None,
    output_path: str | os.PathLike | None = None,
    started: datetime | float | None = None,
    finished: datetime | float | None = None,
    command: Sequence[str] | None = None,
) -> dict:
    """The manifest of a finished run, as a JSON-ready dict.

    Parameters
    ----------
    pipeline : Pipeline or list of estimators
        The fitted steps (a :class:`~skdeita.pipeline.DeitaPipeline`, any
        scikit-learn ``Pipeline``, or the list of steps the CLI ran).
    X : DataFrame or None, default=None
        The input. Hashed by content when ``input_path`` is not given.
    Xt : DataFrame or None, default=None
        The output. Hashed by content when ``output_path`` is not given.
    input_path, output_path : path-like or None, default=None
        The files read and written: hashed by their bytes (a Parquet folder
        by its files).
    started, finished : datetime, POSIX time or None, default=None
        When the run started and ended.
    command : sequence of str or None, default=None
        The command line (``sys.argv`` for the CLI).

    Returns
    -------
    manifest : dict
        ``skdeita_manifest`` (format version), ``versions``, ``command``,
        ``parameters`` (per step), ``models`` (per model-backed step: model,
        path, ``weights_sha256``, backend, device, dtype), ``input`` and
        ``output`` (path, rows, ``sha256``), ``outcomes`` (rows kept,
        blocked, over budget, excluded), ``started``, ``finished`` (UTC, ISO
        8601) and ``duration_s``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import DeitaSelector
    >>> from skdeita.report import build_manifest
    >>> X = pd.DataFrame({"embedding": [[1.0, 0.0], [0.0, 1.0]],
    ...                   "evol_instruction_score": [2.0, 1.0],
    ...                   "evol_response_score": [1.0, 1.0]})
    >>> selector = DeitaSelector(1)
    >>> m = build_manifest([selector], X, selector.fit_transform(X))
    >>> m["outcomes"], m["input"]["rows"], m["output"]["rows"]
    ({'kept': 1, 'blocked': 0, 'over_budget': 1, 'excluded': 0}, 2, 1)
    """
    steps = _steps(pipeline)
    selector = next((s for _, s in reversed(steps) if hasattr(s, "n_selected_")), None)
    t0, t1 = _timestamp(started), _timestamp(finished)
    duration = None
    if started is not None and finished is not None:
        as_seconds = [
            v if isinstance(v, int | float) else v.timestamp() for v in (started, finished)
        ]
        duration = round(as_seconds[1] - as_seconds[0], 3)
    argv = list(command) if command is not None else None
    return {
        "skdeita_manifest": MANIFEST_VERSION,
        "versions": library_versions(),
        "command": argv,
        "command_line": shlex.join(argv) if argv is not None else None,
        "parameters": {
            name: {"estimator": type(s).__name__, **_jsonable(s.get_params(deep=False))}
            for name, s in steps
        },
        "models": [m for m in (model_identity(name, s) for name, s in steps) if m is not None],
        "input": _side(input_path, X),
        "output": _side(output_path, Xt),
        "outcomes": outcome_counts(Xt, selector, None if X is None else _rows(X))
        if Xt is not None
        else {},
        "started": t0,
        "finished": t1,
        "duration_s": duration,
        "host": {"platform": platform.platform(), "executable": sys.executable},
    }


def write_manifest(manifest: dict, output: str | os.PathLike) -> Path:
    """Write ``manifest`` to ``<output>.manifest.json`` atomically; return its path.

    Call it after the output is complete: the manifest says the output exists
    and is whole. The file goes to a hidden temporary name first and is
    renamed over the target, so no reader ever sees a partial manifest.
    """
    target = manifest_path(output)
    tmp = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def run_with_manifest(pipeline, X, *, input_path=None, command=None):
    """``pipeline.fit_transform(X)``, timed, and the manifest of that run.

    Parameters
    ----------
    pipeline : Pipeline
        For example :func:`~skdeita.make_deita_pipeline`'s.
    X : DataFrame
        The pool.
    input_path : path-like or None, default=None
        The file ``X`` was read from, hashed instead of ``X``'s content.
    command : sequence of str or None, default=None
        Recorded as the command.

    Returns
    -------
    Xt : DataFrame
        The pipeline's output.
    manifest : dict
        See :func:`build_manifest`. Nothing is written; pass it to
        :func:`write_manifest` after writing ``Xt``.
    """
    started = time.time()
    Xt = pipeline.fit_transform(X)
    finished = time.time()
    manifest = build_manifest(
        pipeline, X, Xt, input_path=input_path, started=started, finished=finished, command=command
    )
    return Xt, manifest
