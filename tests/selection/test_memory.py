"""Memory of deita_select: the peak stays bounded by the embedding matrix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# -- memory -----------------------------------------------------------------------------

_RSS = """
import json, numpy as np
from skdeita import deita_select
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM"))
n, d = 200_000, 384
rng = np.random.default_rng(0)
centers = rng.standard_normal((n // 50, d), dtype=np.float32)
emb = np.empty((n, d), dtype=np.float32)
for s in range(0, n, 50_000):
    emb[s:s + 50_000] = centers[rng.integers(0, len(centers), 50_000)]
    emb[s:s + 50_000] += 0.2 * rng.standard_normal((50_000, d), dtype=np.float32)
scores = rng.uniform(size=n)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
res = deita_select(emb, scores, data_budget=2000)
print(json.dumps({"peak": hwm(), "matrix": emb.nbytes, "kept": len(res.selected)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc peak RSS")
def test_selection_peak_memory_stays_under_twice_the_matrix():
    out = subprocess.run([sys.executable, "-c", _RSS], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["kept"] == 2000
    assert r["peak"] < 2 * r["matrix"], r
