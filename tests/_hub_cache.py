"""A local Hugging Face cache written by hand, for the offline checks.

No hub is reachable here, so a "downloaded" hub model is a model folder
placed in the cache's own layout (``models--OWNER--NAME/refs/main`` naming a
snapshot, ``snapshots/<commit>/`` holding the files), which huggingface_hub
and transformers read as they read a real download.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_model(cache: Path, repo_id: str, source: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """Place the files of ``source`` in ``cache`` as hub model ``repo_id``; return
    the snapshot folder. ``skip`` leaves files out (a partial download)."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(*skip))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot
