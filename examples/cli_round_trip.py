"""The command line, round trip: write a JSONL pool, select with `skdeita select`, read back."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from skdeita.datasets import load_sample

with tempfile.TemporaryDirectory() as tmp:
    src, dst = Path(tmp) / "pool.jsonl", Path(tmp) / "curated.jsonl"
    load_sample().to_json(src, orient="records", lines=True)
    cmd = [
        sys.executable,
        "-m",
        "skdeita",
        "select",
        str(src),
        "-o",
        str(dst),
        "--budget",
        "50",
        "--threshold",
        "0.1",
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(done.stdout.strip())
    curated = pd.read_json(dst, lines=True)
    print(curated[["instruction", "deita_score"]].head().to_string())
    assert len(curated) == 50 and "embedding" in curated.columns

    bad = subprocess.run(
        [sys.executable, "-m", "skdeita", "select", str(src), "-o", str(src), "--budget", "5"],
        capture_output=True,
        text=True,
    )
    print("same input and output ->", bad.returncode, bad.stderr.strip())
    assert bad.returncode == 2
