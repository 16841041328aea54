"""The command line at the edges (issue 13): a bad option, file or output is a
one-line error with exit code 2 before any model loads; nothing is left
half-written."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from skdeita.cli._terms import OPTION_OF

from ..conftest import NO_MODEL

# What a model that cannot be found or loaded says (the pre-flight check or the
# load itself); "Traceback" last: never expected.
LOAD_ERRORS = (
    "Could not load model",
    "not available offline",
    "no such model directory",
    "no such ranker directory",
    "Traceback",
)


# What an error on the command line never says: an estimator's parameter name
# (the option that sets it instead), or X for the input.
PARAMETER_NAMES = re.compile(
    r"(?<![\w'-])(" + "|".join(p for p in OPTION_OF if "_" in p) + r")(?![\w'])|\bin X\b"
)


# -- 5. the command line ---------------------------------------------------------------


def _cli(argv, capsys):
    from skdeita.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.fixture
def cli_files(tmp_path):
    """Inputs for the command line: good ones and one of each kind of bad file."""

    def jsonl(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    texts = [
        {
            "instruction": f"question {i}",
            "response": f"answer {i}",
            "evol_instruction_score": 1.0 + i,
            "evol_response_score": 2.0,
        }
        for i in range(4)
    ]
    files = {
        "texts": jsonl("texts.jsonl", texts),
        "raw": jsonl("raw.jsonl", [{k: r[k] for k in ("instruction", "response")} for r in texts]),
        "rank": jsonl("rank.jsonl", [{"input": "q", "candidates": ["a", "b"]}] * 3),
        "rank_empty": jsonl("rank_empty.jsonl", [{"input": "q", "candidates": []}]),
        "nan_score": jsonl(
            "nan_score.jsonl",
            texts[:2] + [{**texts[2], "evol_instruction_score": None, "evol_response_score": None}],
        ),
        "not_object": jsonl("not_object.jsonl", [texts[0], [1, 2]]),
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(texts[0]) + "\n\n" + '{"instruction": "q",\n')
    files["bad_json"] = bad
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(json.dumps(texts[0]) + "\n" + '{"instruction": "a \\ud800 b"}\n')
    files["surrogate"] = surrogate
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes(json.dumps(texts[0]).encode() + b'\n{"instruction": "caf\xe9"}\n')
    files["not_utf8"] = not_utf8
    csv = tmp_path / "pool.csv"
    csv.write_text(
        "embedding,evol_instruction_score,evol_response_score\n"
        '"[1.0, 0.0]",1,1\n"[0.0, 1.0]",2,2\n"oops",3,3\n'
    )
    files["bad_csv"] = csv
    (tmp_path / "pool.txt").write_text("x")
    files["txt"] = tmp_path / "pool.txt"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    (tmp_path / "out.jsonl").mkdir()  # a folder with a file's name
    return files


_SELECT = ["select", "{texts}", "-o", "{out}", "--budget", "2", "--model", NO_MODEL]
_CURATE = [
    "curate",
    "{raw}",
    "-o",
    "{out}",
    "--budget",
    "2",
    "--complexity-model",
    NO_MODEL,
    "--quality-model",
    NO_MODEL,
    "--embedding-model",
    NO_MODEL,
]
_RANK = ["rank", "{rank}", "-o", "{out}", "--model", NO_MODEL]


def _argv(base, extra=(), **replace):
    argv = list(base) + list(extra)
    for key, value in replace.items():
        argv[argv.index("{" + key + "}")] = value
    return argv


# (argv, what the one-line error must say)
_CLI_CASES = {
    "select --budget inf": (_argv(_SELECT, ["--budget", "inf"]), "--budget"),
    "select --budget nan": (_argv(_SELECT, ["--budget", "nan"]), "--budget"),
    "select --budget 0": (_argv(_SELECT, ["--budget", "0"]), "--budget"),
    "select --budget 1.5": (_argv(_SELECT, ["--budget", "1.5"]), "--budget"),
    "select --budget ten": (_argv(_SELECT, ["--budget", "ten"]), "--budget"),
    "select --threshold -0.1": (_argv(_SELECT, ["--threshold", "-0.1"]), "--threshold"),
    "select --threshold nan": (_argv(_SELECT, ["--threshold", "nan"]), "--threshold"),
    "select --metric nope": (_argv(_SELECT, ["--metric", "nope"]), "--metric must be"),
    "select --metric mahalanobis": (_argv(_SELECT, ["--metric", "mahalanobis"]), "--metric"),
    "select empty score columns": (
        _argv(_SELECT, ["--instruction-score-col", "", "--response-score-col", ""]),
        "--instruction-score-col",
    ),
    "select --embedding-col ''": (_argv(_SELECT, ["--embedding-col", ""]), "--embedding-col"),
    "select unclosed template": (
        _argv(_SELECT, ["--text-template", "{instruction}\n{response"]),
        "--text-template='{instruction}\\n{response' is not a valid format string",
    ),
    "select stray brace template": (
        _argv(_SELECT, ["--text-template", "x} {instruction}"]),
        "at position 1",
    ),
    "select positional template": (_argv(_SELECT, ["--text-template", "{}"]), "positional"),
    "select format spec template": (
        _argv(_SELECT, ["--text-template", "{instruction:>9}"]),
        "format spec",
    ),
    "select template naming no column": (
        _argv(_SELECT, ["--text-template", "{nope}"]),
        "'nope' (--text-template field {nope})",
    ),
    "select missing score column": (
        _argv(_SELECT, ["--instruction-score-col", "complexity"]),
        "no column 'complexity' (--instruction-score-col)",
    ),
    "select missing messages column": (_argv(_SELECT, ["--messages-col", "conv"]), "'conv'"),
    "select NaN score": (_argv(_SELECT, texts="{nan_score}"), "no score"),
    "select malformed JSONL": (_argv(_SELECT, texts="{bad_json}"), "line 3 is not valid JSON"),
    "select JSONL line not an object": (_argv(_SELECT, texts="{not_object}"), "line 2: expected"),
    "select lone surrogate in JSONL": (_argv(_SELECT, texts="{surrogate}"), "line 2: a \\uD800"),
    "select JSONL not UTF-8": (_argv(_SELECT, texts="{not_utf8}"), "line 2 is not UTF-8"),
    "select missing file": (_argv(_SELECT, texts="{tmp}/missing.jsonl"), "no such file"),
    "select unknown extension": (_argv(_SELECT, texts="{txt}"), "unknown file type '.txt'"),
    "select CSV embedding not JSON": (
        _argv(_SELECT, texts="{bad_csv}"),
        "not a JSON list at row 2 (line 4",
    ),
    "select output is a folder": (_argv(_SELECT, out="{tmp}/full"), "existing folder"),
    "select output folder with a file name": (
        _argv(_SELECT, out="{tmp}/out.jsonl"),
        "existing folder",
    ),
    "select output in a missing folder": (
        _argv(_SELECT, out="{tmp}/nowhere/out.jsonl"),
        "does not exist",
    ),
    "select output is the input": (_argv(_SELECT, out="{texts}"), "is the input file"),
    "select output unknown extension": (_argv(_SELECT, out="{tmp}/o.txt"), "unknown file type"),
    "curate --budget inf": (_argv(_CURATE, ["--budget", "inf"]), "--budget"),
    "curate --threshold -1": (_argv(_CURATE, ["--threshold", "-1"]), "--threshold"),
    "curate --metric nope": (_argv(_CURATE, ["--metric", "nope"]), "--metric must be"),
    "curate --batch-size 0": (_argv(_CURATE, ["--batch-size", "0"]), "--batch-size"),
    "curate --instruction-col nope": (
        _argv(_CURATE, ["--instruction-col", "prompt"]),
        "no column 'prompt' (--instruction-col)",
    ),
    "curate --response-col ''": (_argv(_CURATE, ["--response-col", ""]), "--response-col"),
    "curate --text-template unclosed": (
        _argv(_CURATE, ["--text-template", "{instruction"]),
        "at position 0",
    ),
    "curate --device nonsense": (_argv(_CURATE, ["--device", "gpu0"]), "--device='gpu0'"),
    "curate --device cuda:7": (_argv(_CURATE, ["--device", "cuda:7"]), "--device='cuda:7'"),
    "curate missing text column": (_argv(_CURATE, raw="{rank}"), "'instruction'"),
    "curate lone surrogate": (_argv(_CURATE, raw="{surrogate}"), "line 2"),
    "curate malformed JSONL": (_argv(_CURATE, raw="{bad_json}"), "line 3"),
    "curate output is a folder": (_argv(_CURATE, out="{tmp}/full"), "existing folder"),
    "curate output is the input": (_argv(_CURATE, out="{raw}"), "is the input file"),
    "rank missing input column": (_argv(_RANK, ["--input-col", "prompt"]), "'prompt'"),
    "rank empty candidates column": (
        _argv(_RANK, ["--candidates-col", ""]),
        "--candidates-col must name a column",
    ),
    "rank empty candidate list": (_argv(_RANK, rank="{rank_empty}"), "empty candidate list"),
    "rank --device nonsense": (_argv(_RANK, ["--device", "gpu0"]), "--device='gpu0'"),
    "rank malformed JSONL": (_argv(_RANK, rank="{bad_json}"), "line 3"),
    "rank output is the input": (_argv(_RANK, out="{rank}"), "is the input file"),
    "rank output in a missing folder": (_argv(_RANK, out="{tmp}/no/o.jsonl"), "does not exist"),
}


def _fill(argv, files, tmp_path):
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    names.setdefault("out", str(tmp_path / "curated.jsonl"))
    filled = []
    for arg in argv:
        for key, value in names.items():
            arg = arg.replace("{" + key + "}", value)
        filled.append(arg)
    return filled


@pytest.mark.parametrize("case", sorted(_CLI_CASES))
def test_cli_rejects_bad_input_in_one_line_with_exit_2_before_any_model(
    case, cli_files, tmp_path, capsys
):
    argv, fragment = _CLI_CASES[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _cli(_fill(argv, cli_files, tmp_path), capsys)
    assert code == 2, err
    assert err.startswith("skdeita") and "\n" not in err, err
    assert fragment in err, err
    assert not PARAMETER_NAMES.search(err), err  # options, not the estimators' parameters
    assert not any(marker in err for marker in LOAD_ERRORS), err  # nothing was loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing was written


@pytest.mark.parametrize("base", [_SELECT, _CURATE, _RANK], ids=["select", "curate", "rank"])
def test_cli_good_input_reaches_the_missing_model(base, cli_files, tmp_path, capsys):
    """The control of the test above: without the defect the command goes on to
    load the (missing) model, so each error above came before any load."""
    code, err = _cli(_fill(base, cli_files, tmp_path), capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith("skdeita: error:")
    assert any(marker in err for marker in LOAD_ERRORS[:-1]), err
    assert not (tmp_path / "curated.jsonl").exists()


@pytest.fixture(scope="module")
def big_pool(tmp_path_factory):
    """120,000 rows with 2-D embeddings: a second or two of reading and writing."""
    folder = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    emb = np.round(rng.normal(size=(120_000, 2)), 3).tolist()
    scores = rng.integers(1, 6, size=(120_000, 2)).tolist()
    lines = (
        f'{{"embedding": [{a}, {b}], "evol_instruction_score": {c}, "evol_response_score": {d}}}\n'
        for (a, b), (c, d) in zip(emb, scores, strict=True)
    )
    (folder / "pool.jsonl").write_text("".join(lines))
    return folder / "pool.jsonl"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_writing_leaves_no_output_and_no_temporary_file(big_pool, tmp_path, signame):
    import os
    import signal
    import time

    out = tmp_path / "curated.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skdeita", "select", str(big_pool), "-o", str(out)]
        + ["--budget", "1000", "--threshold", "0", "--annotate", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        # A background job's children inherit an ignored SIGINT (as from
        # ``./run test &``); a user's Ctrl-C reaches a process that handles it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.002)  # wait for the temporary file: the write has begun
    assert proc.poll() is None, "the command ended before writing; use a bigger input"
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert list(tmp_path.iterdir()) == []  # neither the output nor a .tmp file


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ImportError("The scorers need the 'torch' package. Install it with: pip install x"), 2),
        (OSError("disk full"), 2),
        ("scoring", 1),
    ],
    ids=["missing extra", "OS error", "scoring error"],
)
def test_cli_reports_a_failure_inside_the_run_in_one_line(
    error, code, cli_files, tmp_path, capsys, monkeypatch, minilm_path
):
    from skdeita.cli import _run
    from skdeita.exceptions import ScoringError

    def fail(steps, frame):
        raise (
            ScoringError("ComplexityScorer could not score row 'r1'")
            if error == "scoring"
            else error
        )

    monkeypatch.setattr(_run, "run_pipeline", fail)
    # A model that exists: the run gets past the pre-flight check to the failure.
    argv = [minilm_path if a == NO_MODEL else a for a in _SELECT]
    got, err = _cli(_fill(argv, cli_files, tmp_path), capsys)
    assert got == code
    # The run had begun: the cache line came first; the failure is one line.
    info, error = err.rsplit("\n", 1) if "\n" in err else ("", err)
    assert all(line.startswith("skdeita: cache:") for line in info.splitlines())
    assert error.startswith("skdeita: error:") and "Traceback" not in err
    assert not (tmp_path / "curated.jsonl").exists()
