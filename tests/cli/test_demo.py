"""``skdeita demo``: the built-in sample, curated, with its manifest and report."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("sentence_transformers")


@pytest.mark.slow
def test_demo_writes_the_manifest_and_the_report_and_prints_their_paths(tmp_path, capsys):
    from skdeita.cli import main

    assert main(["demo", "--output-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    report, table = tmp_path / "out" / "report.html", tmp_path / "out" / "selection.csv"
    assert f"Report page:     {report}" in printed
    manifest = json.loads((tmp_path / "out" / "selection.csv.manifest.json").read_text())
    assert manifest["output"]["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert manifest["outcomes"]["kept"] == 100
    assert sum(manifest["outcomes"].values()) == manifest["input"]["rows"] == 320
    (model,) = manifest["models"]
    assert model["weights_sha256"] and model["model"].endswith("all-MiniLM-L6-v2")
    page = report.read_text(encoding="utf-8")
    assert page.count("<figure") == 6 and "<script" not in page
