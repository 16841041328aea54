"""``skdeita report`` and finish_run (the manifest and report after a run)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skdeita import DeitaSelector
from skdeita.cli import main
from skdeita.cli._report import finish_run

from ..report.conftest import make_pool


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture
def files(tmp_path):
    pool = make_pool(n=80, d=5).dropna(subset=["evol_instruction_score"])
    pool = pool.assign(embedding=[v.tolist() for v in pool.embedding])
    src = tmp_path / "pool.jsonl"
    pool.to_json(src, orient="records", lines=True)
    return tmp_path, src


def test_select_then_report_reads_the_manifest_beside_the_output(files, capsys):
    tmp_path, src = files
    annotated = tmp_path / "annotated.jsonl"
    code, _, err = _run(
        ["select", src, "-o", annotated, "--budget", "20", "--threshold", "0.05", "--annotate"],
        capsys,
    )
    assert code == 0, err
    from skdeita.cli._io import read_table

    frame, out = read_table(src, ("embedding",)), read_table(annotated, ("embedding",))
    selector = DeitaSelector(20, diversity_threshold=0.05, output="annotate").fit(frame)
    manifest = finish_run(
        [selector],
        frame,
        out,
        input_path=src,
        output_path=annotated,
        started=0.0,
        argv=["skdeita", "select"],
    )
    assert (tmp_path / "annotated.jsonl.manifest.json").is_file()
    code, out_text, err = _run(["report", annotated, "-o", tmp_path / "r.html"], capsys)
    assert code == 0, err
    assert "report (78 rows) ->" in out_text
    page = (tmp_path / "r.html").read_text()
    # The settings come from the manifest found beside the input.
    assert '0.05</td><td class="note">manifest' in page
    assert manifest["output"]["sha256"] in page


def test_a_pool_is_selected_with_the_options_given(files, capsys):
    tmp_path, src = files
    code, _, err = _run(
        [
            "report",
            src,
            "-o",
            tmp_path / "r.html",
            "--budget",
            "10",
            "--no-curve",
            "--text-cols",
            "instruction",
            "--pairs",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "The input is a pool" in page and "Not drawn" in page
    assert "The 3 closest blocked pairs" in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "{tmp}/r.txt"], "give an .html file name"),
        (["-o", "{tmp}/nope/r.html"], "does not exist"),
        (["-o", "{tmp}/r.html", "--manifest", "{tmp}/none.json"], "no such file"),
        (["-o", "{tmp}/r.html", "--text-cols", "nope"], "text_cols names ['nope']"),
        (["-o", "{tmp}/r.html", "--max-map-points", "3"], "whole number >= 10"),
        (["-o", "{tmp}/r.html", "--metric", "nope"], "--metric must be"),
    ],
)
def test_bad_options_are_one_line_and_exit_code_2(files, capsys, argv, message):
    tmp_path, src = files
    argv = [a.format(tmp=tmp_path) for a in argv]
    code, _, err = _run(["report", src, *argv], capsys)
    assert code == 2
    assert message in err and "\n" not in err
    assert not (tmp_path / "r.html").exists()


def test_a_pool_without_embeddings_is_a_clear_error(files, capsys):
    tmp_path, _ = files
    src = tmp_path / "texts.jsonl"
    src.write_text(
        json.dumps({"instruction": "q", "evol_instruction_score": 1.0, "evol_response_score": 1.0})
        + "\n"
    )
    code, _, err = _run(["report", src, "-o", tmp_path / "r.html"], capsys)
    assert code == 2 and "embedding" in err


def test_finish_run_writes_the_manifest_and_the_report(files):
    tmp_path, src = files
    from skdeita.cli._io import read_table

    frame = read_table(src, ("embedding",))
    selector = DeitaSelector(10, output="annotate", show_progress_bar=False)
    out = selector.fit_transform(frame)
    out.to_json(tmp_path / "out.jsonl", orient="records", lines=True)
    manifest = finish_run(
        [selector],
        frame,
        out,
        input_path=src,
        output_path=tmp_path / "out.jsonl",
        started=0.0,
        report_path=tmp_path / "r.html",
        argv=["skdeita", "select"],
    )
    written = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert written == manifest
    assert written["outcomes"]["kept"] == 10
    assert int(np.sum(list(written["outcomes"].values()))) == len(frame)
    assert (tmp_path / "r.html").read_text().count("<figure") == 6
