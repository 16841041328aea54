"""The run manifest: hashes recomputed here independently, atomic writing,
counts per outcome, models and their weights."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from skdeita import DeitaSelector, EmbeddingTransformer
from skdeita.report import (
    build_manifest,
    frame_digest,
    manifest_path,
    path_digest,
    run_with_manifest,
    write_manifest,
)

from .conftest import make_pool


def _sha256_file(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_digest(folder) -> str:
    """The model-folder digest as documented: sorted files a loader may read
    (no dot-files, README/licence/*.md), each as 'path NUL size NUL sha256'."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        name = path.name.lower()
        if any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        if name.endswith(".md") or name.startswith(("readme", "license", "licence", "notice")):
            continue
        line = f"{rel.as_posix()}\0{path.stat().st_size}\0{_sha256_file(path)}\n"
        h.update(line.encode())
    return h.hexdigest()


def _scored(n=30):
    return make_pool(n=n, d=6).dropna(subset=["evol_instruction_score"])


def test_file_hashes_and_rows_are_those_of_the_files(tmp_path):
    pool = _scored()
    src, dst = tmp_path / "pool.jsonl", tmp_path / "out.jsonl"
    pool.assign(embedding=[v.tolist() for v in pool.embedding]).to_json(
        src, orient="records", lines=True
    )
    selector = DeitaSelector(5, show_progress_bar=False)
    out = selector.fit_transform(pool)
    out.to_json(dst, orient="records", lines=True, default_handler=str)
    manifest = build_manifest(
        [selector], pool, out, input_path=src, output_path=dst, command=["skdeita", "select"]
    )
    assert manifest["input"] == {
        "path": str(src),
        "rows": len(pool),
        "sha256": _sha256_file(src),
        "hash_of": "file bytes",
    }
    assert manifest["output"]["sha256"] == _sha256_file(dst)
    assert manifest["output"]["rows"] == 5
    assert manifest["command_line"] == "skdeita select"


def test_a_parquet_folder_is_hashed_by_its_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        (folder / f"part.{i}.parquet").write_bytes(bytes([i]) * (i + 10))
    expected = _folder_digest(folder)
    assert path_digest(folder) == expected
    (folder / "part.1.parquet").write_bytes(b"changed")
    assert path_digest(folder) != expected


def _plain_frame_digest(frame: pd.DataFrame) -> str:
    """frame_digest's definition, written out cell by cell."""
    h = hashlib.sha256()
    h.update(f"rows={len(frame)}\0".encode())
    columns = [("__index__", pd.Series(list(frame.index), dtype=frame.index.dtype))]
    columns += [(str(c), frame[c]) for c in frame.columns]
    for name, s in columns:
        h.update(f"{name}\0{s.dtype}\0".encode())
        if s.dtype.kind in "biuf":
            h.update(np.asarray(s, dtype=np.float64).tobytes())
            continue
        for v in s.tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                h.update(b"\x00N")
            elif isinstance(v, str):
                data = v.encode("utf-8")
                h.update(b"\x00S" + len(data).to_bytes(8, "little") + data)
            elif isinstance(v, float | int):
                h.update(b"\x00F" + np.float64(v).tobytes())
            else:
                arr = np.asarray(v, dtype=np.float64)
                h.update(b"\x00V" + str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()


def test_frame_digest_follows_its_definition_and_sees_every_change():
    frame = pd.DataFrame(
        {
            "text": ["a", None, "ü"],
            "score": [1.0, np.nan, 3.0],
            "embedding": [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])],
        },
        index=["x", "y", "z"],
        dtype=object,
    ).astype({"score": float})
    assert frame_digest(frame) == _plain_frame_digest(frame)
    assert frame_digest(frame.copy()) == frame_digest(frame)
    changed = frame.copy()
    changed.at["z", "embedding"] = np.array([5.0, 6.000001])
    assert frame_digest(changed) != frame_digest(frame)
    assert frame_digest(frame.rename(index={"x": "w"})) != frame_digest(frame)
    assert frame_digest(frame.iloc[::-1]) != frame_digest(frame)


def test_model_weights_hash_is_the_folder_digest(tiny_bert_dir):
    pool = _scored()[["instruction", "response", "evol_instruction_score", "evol_response_score"]]
    embedder = EmbeddingTransformer(
        str(tiny_bert_dir),
        backend="transformers",
        template="{instruction}",
        device="cpu",
        show_progress_bar=False,
    )
    pipe = make_pipeline(
        embedder, DeitaSelector(5, diversity_threshold=0.0, show_progress_bar=False)
    )
    out, manifest = run_with_manifest(pipe, pool)
    (model,) = manifest["models"]
    assert model["step"] == "embeddingtransformer"
    assert model["path"] == str(tiny_bert_dir.resolve())
    assert model["weights_sha256"] == _folder_digest(tiny_bert_dir)
    assert (model["backend"], model["device"], model["dtype"]) == (
        "transformers",
        "cpu",
        "float32",
    )
    assert manifest["input"]["sha256"] == frame_digest(pool)
    assert manifest["output"]["sha256"] == frame_digest(out)


def test_the_packaged_default_model_is_found_and_hashed(minilm_path):
    from pathlib import Path

    from skdeita.report._manifest import model_identity

    entry = model_identity("embedding", EmbeddingTransformer())
    assert entry["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert entry["path"] == str(Path(minilm_path).resolve())
    assert entry["weights_sha256"] == _folder_digest(Path(minilm_path))


def test_a_model_object_has_no_files_to_hash():
    from skdeita.report._manifest import model_identity

    class Model:
        pass

    step = EmbeddingTransformer.__new__(EmbeddingTransformer)
    step.model, step.device, step.dtype, step.backend = Model(), "cpu", "float32", "x"
    entry = model_identity("embedding", step)
    assert entry["weights_sha256"] is None and "no local copy" in entry["note"]


def test_outcomes_from_an_annotated_output_and_from_a_subset(annotated):
    pool = _scored(60)
    selector = DeitaSelector(10, show_progress_bar=False)
    subset = selector.fit_transform(pool)
    counts = build_manifest([selector], pool, subset)["outcomes"]
    assert counts == {
        "kept": 10,
        "blocked": selector.n_visited_ - 10,
        "over_budget": len(pool) - selector.n_visited_,
        "excluded": 0,
    }
    counts = build_manifest([], annotated, annotated)["outcomes"]
    expected = annotated["deita_status"].value_counts()
    assert counts == {k: int(expected.get(k, 0)) for k in counts}
    assert sum(counts.values()) == len(annotated)


def test_parameters_times_and_versions_are_recorded():
    pool = _scored()
    reference = pd.DataFrame({"embedding": [np.ones(6)]})
    selector = DeitaSelector(5, reference=reference, show_progress_bar=False)
    before = time.time()
    out, manifest = run_with_manifest(make_pipeline(selector), pool)
    params = manifest["parameters"]["deitaselector"]
    assert params["estimator"] == "DeitaSelector" and params["data_budget"] == 5
    assert params["reference"] == {"dataframe": {"rows": 1, "sha256": frame_digest(reference)}}
    started = datetime.fromisoformat(manifest["started"]).timestamp()
    finished = datetime.fromisoformat(manifest["finished"]).timestamp()
    assert before <= started <= finished <= time.time()
    assert manifest["duration_s"] == pytest.approx(finished - started, abs=2e-3)
    versions = manifest["versions"]
    assert versions["skdeita"] and versions["numpy"] == np.__version__
    json.dumps(manifest, allow_nan=False)  # plain JSON, no NaN or inf


def test_manifest_goes_beside_the_output_atomically(tmp_path):
    manifest = {"skdeita_manifest": 1, "outcomes": {"kept": 3}}
    path = write_manifest(manifest, tmp_path / "out.jsonl")
    assert path == tmp_path / "out.jsonl.manifest.json"
    assert json.loads(path.read_text()) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl.manifest.json"]
    assert manifest_path(str(tmp_path / "folder") + "/") == tmp_path / "folder.manifest.json"


def test_a_failed_run_leaves_no_manifest(tmp_path):
    pool = _scored().drop(columns="embedding")
    with pytest.raises(ValueError, match="embedding"):
        run_with_manifest(make_pipeline(DeitaSelector(5)), pool)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_that_cannot_be_json_is_not_written(tmp_path):
    with pytest.raises(ValueError):
        write_manifest({"bad": float("nan")}, tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_steps_given_as_a_list_are_named_as_make_pipeline_names_them():
    from skdeita.report._manifest import _steps

    steps = [DeitaSelector(), EmbeddingTransformer(), DeitaSelector(1)]
    assert [n for n, _ in _steps(steps)] == [n for n, _ in make_pipeline(*steps).steps]
