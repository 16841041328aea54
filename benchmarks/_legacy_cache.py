"""skdeita 0.1's per-text cache (``VectorCache``), kept here only as the
"before" side of ``bench_cache.py``: every shard read into a Python dict on
first use."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


class VectorCache:
    """One vector per text for one model, stored under ``location``."""

    def __init__(self, location: str | os.PathLike, model_key: str, kind: str = "embeddings"):
        digest = hashlib.sha256(model_key.encode()).hexdigest()[:24]
        self.directory = Path(location) / f"skdeita-{kind}" / digest
        self._loaded: dict[bytes, np.ndarray] | None = None

    @classmethod
    def from_param(cls, cache, model_key: str, kind: str = "embeddings") -> VectorCache | None:
        """Accept None, a path, or a ``joblib.Memory`` (its location is used)."""
        if cache is None:
            return None
        location = getattr(cache, "location", cache)
        if location is None:  # joblib.Memory(None) caches nothing
            return None
        return cls(location, model_key, kind)

    def _entries(self) -> dict[bytes, np.ndarray]:
        if self._loaded is None:
            self._loaded = {}
            for shard in sorted(self.directory.glob("*.npz")):
                with np.load(shard) as data:
                    for key, vec in zip(data["keys"], data["vectors"], strict=True):
                        self._loaded[key.tobytes()] = vec
        return self._loaded

    def get(self, keys: list[bytes]) -> list[np.ndarray | None]:
        entries = self._entries()
        return [entries.get(k) for k in keys]

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            packed = np.frombuffer(b"".join(keys), dtype="V16")
            np.savez(fh, keys=packed, vectors=vectors)
        final = self.directory / f"{hashlib.sha256(b''.join(keys)).hexdigest()[:20]}.npz"
        os.replace(tmp, final)
        entries = self._entries()
        for key, vec in zip(keys, vectors, strict=True):
            entries[key] = vec
