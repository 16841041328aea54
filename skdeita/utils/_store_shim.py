"""TEMPORARY: the ResultStore API over the old VectorCache (replaced by the store branch)."""

from __future__ import annotations

import numpy as np

from ._disk_cache import VectorCache


class _Writer:
    def __init__(self, cache):
        self.cache = cache

    def add(self, keys, values):
        self.cache.put([k.tobytes() for k in keys], np.asarray(values))

    def close(self):
        pass


class ResultStore:
    def __init__(self, cache, width, dtype):
        self.cache, self.width, self.dtype = cache, width, dtype
        self.directory = cache.directory

    @classmethod
    def from_param(cls, cache, identity, kind, *, width, dtype):
        vc = VectorCache.from_param(cache, identity, kind)
        return None if vc is None else cls(vc, width, dtype)

    def check_writable(self):
        self.directory.mkdir(parents=True, exist_ok=True)

    def lookup(self, keys):
        got = self.cache.get([k.tobytes() for k in keys])
        found = np.array([g is not None for g in got], dtype=bool)
        values = np.full((len(keys), self.width), np.nan, dtype=self.dtype)
        for i, g in enumerate(got):
            if g is not None:
                values[i] = g
        return found, values

    def writer(self):
        return _Writer(self.cache)
