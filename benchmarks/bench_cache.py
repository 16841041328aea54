"""The result store (``ResultStore``) at scale, side by side with the first cache
(``VectorCache``): 1,000,000 cached score rows (width 1, float64) and 300,000
cached 1,024-float embeddings (float32).

Each data set is written three ways, in realistic checkpoints of ``--batch``
rows: the store's journal as a run leaves it when killed (one record per
batch, never merged), the store after a writer's close merged it, and the old
cache's one ``.npz`` shard per batch. Then, in a fresh subprocess per layout,
every key is looked up (in a shuffled order; the old cache's rows then
stacked into the same ``(n, width)`` array the store returns) and the table
reports the time to open and look up, and the peak memory: the high-water mark of the process's
resident set (``/proc/self/status`` VmHWM, reset through
``/proc/self/clear_refs`` once the query keys are built, so it counts the
lookup alone, file pages included), as a multiple of the raw bytes (keys +
values). The store's values are checked bit for bit against what was written.

    python benchmarks/bench_cache.py                         # both data sets
    python benchmarks/bench_cache.py --only scores --scale 0.1  # a quick look

Keys are random 16-byte strings (what ``unit_keys`` yields, without hashing
a million texts first). Needs Linux (``/proc``), ~4 GB of disk in
``--folder`` (a temporary folder by default) and ~5 GB of memory for the old
cache's embeddings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _legacy_cache import VectorCache

from skdeita.utils._disk_cache import ResultStore

SETS = {
    "scores": dict(n=1_000_000, width=1, dtype="float64", batch=4096),
    "embeddings": dict(n=300_000, width=1024, dtype="float32", batch=1024),
}


def batch_values(lo: int, hi: int, width: int, dtype) -> np.ndarray:
    """The values of rows lo..hi, regenerated from a seed per row block."""
    rng = np.random.default_rng(lo)
    return rng.standard_normal((hi - lo, width), dtype=np.float32).astype(dtype)


def write(folder: Path, spec: dict, layout: str) -> float:
    keys = np.load(folder / "keys.npy")
    n, width, dtype, batch = spec["n"], spec["width"], spec["dtype"], spec["batch"]
    start = time.perf_counter()
    if layout == "old":
        cache = VectorCache(folder / "old", "bench", kind="bench")
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            cache.put([k.tobytes() for k in keys[lo:hi]], batch_values(lo, hi, width, dtype))
        return time.perf_counter() - start
    store = ResultStore(folder / "new", "bench", "bench", width=width, dtype=dtype)
    if layout == "journal":
        writer = store.writer(compact=False)
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            writer.add(keys[lo:hi], batch_values(lo, hi, width, dtype))
        writer.close()
    else:  # merge the journal: what the close of a writer does
        with store.writer() as writer:
            writer.add(keys[:1], batch_values(0, 1, width, dtype))
    return time.perf_counter() - start


LOOKUP = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[6])
from _legacy_cache import VectorCache
from skdeita.utils._disk_cache import ResultStore

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

folder, layout, dtype = sys.argv[1], sys.argv[2], sys.argv[4]
width, batch = int(sys.argv[3]), int(sys.argv[5])
keys = np.load(folder + "/keys.npy")
order = np.random.default_rng(1).permutation(len(keys))
query = keys[order]
if layout == "old":
    query = [k.tobytes() for k in query]  # the old API's input, built before the mark
open("/proc/self/clear_refs", "w").write("5")
base = hwm_mb()
start = time.perf_counter()
if layout == "old":
    got = VectorCache(folder + "/old", "bench", kind="bench").get(query)
    found = sum(v is not None for v in got)
    values = np.stack(got)  # the same (n, width) array as the store's lookup
else:
    store = ResultStore(folder + "/new", "bench", "bench", width=width, dtype=dtype)
    mask, values = store.lookup(query)
    found = int(mask.sum())
seconds = time.perf_counter() - start
peak = hwm_mb() - base
exact = None
if layout != "old":  # bit for bit, checked after the measurement
    rows = np.empty(len(keys), dtype=np.int64)
    rows[order] = np.arange(len(keys))
    exact = True
    for lo in range(0, len(keys), batch):
        hi = min(lo + batch, len(keys))
        rng = np.random.default_rng(lo)
        want = rng.standard_normal((hi - lo, width), dtype=np.float32).astype(dtype)
        exact &= values[rows[lo:hi]].tobytes() == want.tobytes()
print(json.dumps(dict(seconds=seconds, peak_mb=peak, found=found, exact=exact)))
"""


def measure(folder: Path, spec: dict, layout: str) -> dict:
    here = Path(__file__).resolve().parent  # for the legacy cache module
    args = [folder, layout, spec["width"], spec["dtype"], spec["batch"], here]
    out = subprocess.run(
        [sys.executable, "-c", LOOKUP, *map(str, args)], capture_output=True, text=True
    )
    if out.returncode:
        sys.exit(f"{layout} lookup failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def files_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def run(name: str, spec: dict, root: Path, old: bool) -> list[str]:
    folder = root / name
    folder.mkdir()
    n, width = spec["n"], spec["width"]
    keys = np.frombuffer(np.random.default_rng(0).bytes(16 * n), dtype="V16")
    np.save(folder / "keys.npy", keys)
    raw_mb = n * (16 + width * np.dtype(spec["dtype"]).itemsize) / 2**20
    rows = []
    for layout in (["old"] if old else []) + ["journal", "merged"]:
        seconds_write = write(folder, spec, layout)
        where = folder / ("old" if layout == "old" else "new")
        result = measure(folder, spec, layout)
        assert result["found"] == n, result
        label = {
            "old": f"VectorCache (get, np.stack), {files_in(where):,} .npz shards",
            "journal": f"ResultStore, 1 journal of {-(-n // spec['batch']):,} records",
            "merged": f"ResultStore, merged ({files_in(where)} file)",
        }[layout]
        rows.append(
            f"| {name} | {label} | {seconds_write:.1f} | {result['seconds']:.2f} | "
            f"{result['peak_mb']:,.0f} | {result['peak_mb'] / raw_mb:.2f}x | "
            f"{'' if result['exact'] is None else 'yes' if result['exact'] else 'NO'} |"
        )
        print(rows[-1], flush=True)
        if layout == "old":
            shutil.rmtree(where)  # room on the disk for the next layout
    shutil.rmtree(folder)
    return [
        f"raw {name}: {n:,} rows x {width} {spec['dtype']} + 16-byte keys = {raw_mb:,.0f} MB"
    ] + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SETS), action="append")
    parser.add_argument("--no-old", action="store_true", help="skip VectorCache")
    parser.add_argument("--folder", type=Path, help="where to write (default: a temp folder)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the rows (smoke runs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        lines = []
        header = (
            "| data | layout | write (s) | open + lookup (s) | peak memory (MB) "
            "| peak / raw | values exact |\n|---|---|---:|---:|---:|---:|---|"
        )
        print(header, flush=True)
        for name in args.only or list(SETS):
            spec = dict(SETS[name], n=int(SETS[name]["n"] * args.scale))
            lines += run(name, spec, Path(tmp), old=not args.no_old)
    print("\n" + header)
    print("\n".join(line for line in lines if line.startswith("|")))
    print("\n" + "\n".join(line for line in lines if not line.startswith("|")))


if __name__ == "__main__":
    main()
