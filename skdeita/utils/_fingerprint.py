"""Content digests of model folders: what identifies a model's weights.

A cache keyed by a model's path alone serves stale values after the weights
under that path change; a digest of a sample of the weights misses a change
in a middle layer. Here every file that loading reads is hashed in full. A
13B checkpoint is tens of GB, so a digest is remembered per file by its
``(real path, size, mtime_ns, inode)``: in this process, and (when given a
folder) on disk, so that a later process or a Dask worker does not re-read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from threading import Lock

_MEMO: dict[tuple, str] = {}
_LOCK = Lock()
_CHUNK = 1 << 22
# Files no loader reads: documentation and licences.
_SKIPPED_SUFFIXES = (".md",)
_SKIPPED_PREFIXES = ("readme", "license", "licence", "notice")


def _loaded_files(directory: Path) -> list[Path]:
    files = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue  # .git, .cache (huggingface_hub's download metadata)
        name = path.name.lower()
        if name.endswith(_SKIPPED_SUFFIXES) or name.startswith(_SKIPPED_PREFIXES):
            continue
        if path.is_file():  # follows symlinks: HF snapshots link to blobs
            files.append(path)
    return files


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_digest(path: str | os.PathLike, memo: dict | None = None) -> str:
    """SHA-256 (hex) of one file's content, remembered by its stat."""
    path = Path(path)
    key = _stat_key(path)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    text_key = json.dumps(key)
    if memo is not None and text_key in memo:
        digest = memo[text_key]
    else:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        if memo is not None:
            memo[text_key] = digest
    with _LOCK:
        _MEMO[key] = digest
    return digest


def files_digest(directory: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex) over every file a loader may read in ``directory``.

    Relative paths and full contents count, so renaming, adding or changing
    any weight, config or tokenizer file changes the digest; the folder's own
    name and location do not. Documentation files (``README``, ``*.md``,
    licences) and dot-files are left out. ``memo_dir`` keeps per-file digests
    in ``memo_dir/fingerprints.json`` for later processes.
    """
    directory = Path(directory)
    memo_file = Path(memo_dir) / "fingerprints.json" if memo_dir is not None else None
    memo = _read_memo(memo_file)
    before = dict(memo) if memo is not None else None
    h = hashlib.sha256()
    for path in _loaded_files(directory):
        rel = path.relative_to(directory).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0{file_digest(path, memo)}\n".encode())
    if memo_file is not None and memo != before:
        _write_memo(memo_file, memo)
    return h.hexdigest()


def _read_memo(memo_file: Path | None) -> dict | None:
    if memo_file is None:
        return None
    try:
        data = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(memo_file: Path, memo: dict) -> None:
    # Best effort: a memo that cannot be written only costs a re-hash later.
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=memo_file.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(memo, fh)
        os.replace(tmp, memo_file)
    except OSError:
        pass


def cache_location(cache) -> Path | None:
    """The folder of a ``cache=`` parameter (a path or a ``joblib.Memory``)."""
    if cache is None:
        return None
    location = getattr(cache, "location", cache)
    return None if location is None else Path(location)


def model_directory(model) -> Path | None:
    """The local folder of a model: the directory given, or a hub name's
    snapshot in the local Hugging Face cache; None when neither exists."""
    path = Path(str(model)).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("config.json", "modules.json"):
        try:
            hit = try_to_load_from_cache(str(model), name)
        except ValueError:  # not a valid repo name
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def model_digest(model, *, cache=None) -> str | None:
    """The content digest of a model's folder (see :func:`files_digest`), or
    None when the model is not on this machine yet (a hub model to download).

    ``cache``: a ``cache=`` parameter; per-file digests are remembered there.
    """
    directory = model_directory(model)
    if directory is None:
        return None
    location = cache_location(cache)
    return files_digest(directory, memo_dir=location / "skdeita-fingerprints" if location else None)


def module_digest(module) -> str:
    """SHA-256 (hex) of every parameter and buffer of a loaded torch module
    (a model object passed in, with no folder to hash)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{tuple(data.shape)}\0{data.dtype}\n".encode())
        h.update(data.view(-1).view(dtype=_byte_dtype(data)).numpy().tobytes())
    return h.hexdigest()


def _byte_dtype(tensor):
    import torch

    return torch.uint8 if tensor.numel() else tensor.dtype
