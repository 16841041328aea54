"""Property-based tests: ``deita_select`` against a plain greedy loop.

The loop below is the DEITA rule written as plainly as possible (one row at a
time, Python lists, float64 numpy, normalisation by the norm), with the
``reference`` seed as extra neighbours. Hypothesis draws small matrices with
duplicated rows, tied scores and extreme scales; the fast, blocked selection
must keep the same positions in the same order, record the same distances,
and raise nothing but skdeita's own ValueError/TypeError.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skdeita import deita_select

SKDEITA = str(Path(__import__("skdeita").__file__).parent)

# Thresholds no distance of the drawn vectors can equal to the last few ulps.
THRESHOLDS = (0.0123457, 0.0712345, 0.291357, 0.612345, 1.13579)


def plain_greedy(emb, scores, budget, threshold, *, metric, normalize, neighbors, reference):
    """The one-row-at-a-time DEITA loop with a reference seed.

    Returns the kept positions in order and ``{position: distance}`` for
    every visited row.
    """
    x = np.asarray(emb, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, x.shape[1])
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)

    def dist(u, v):
        if metric == "cosine":  # in [0, 2], whatever the rounding of the similarity
            cos = float(np.dot(u, v)) / float(np.linalg.norm(u) * np.linalg.norm(v))
            return min(2.0, max(0.0, 1.0 - cos))
        return float(np.sqrt(np.sum((u - v) ** 2)))

    n = len(x)
    order = sorted(range(n), key=lambda i: -float(scores[i]))  # stable: ties in input order
    kept: list[int] = []
    seen: dict[int, float] = {}
    for i in order:
        if len(kept) >= budget:
            break
        others = kept if neighbors == "selected" else [j for j in range(n) if j != i]
        ds = [dist(x[i], r) for r in ref] + [dist(x[i], x[j]) for j in others]
        seen[i] = min(ds) if ds else math.inf
        if seen[i] >= threshold:
            kept.append(i)
    return kept, seen


# Entries: small integers (exact duplicates and exact ties) and floats away
# from zero, so that the plain loop's norms stay exact at any drawn scale.
_entry = st.one_of(
    st.integers(-3, 3).map(float),
    st.builds(lambda sign, v: sign * v, st.sampled_from([-1.0, 1.0]), st.floats(1e-3, 2.0)),
)


@st.composite
def problems(draw):
    n = draw(st.integers(0, 40))
    d = draw(st.integers(1, 6))
    pool = draw(st.lists(st.lists(_entry, min_size=d, max_size=d), min_size=1, max_size=12))
    rows = [list(draw(st.sampled_from(pool))) for _ in range(n)]  # duplicates by design
    for row in rows:  # no all-zero vector (tested on its own below)
        if not any(row):
            row[0] = 1.0
    k = draw(st.integers(-150, 150))
    scale = 10.0**k
    # Rows of very different scales too (within what plain numpy squares exactly).
    row_scales = draw(st.sampled_from(["same", "mixed"])) if abs(k) <= 100 else "same"
    emb = np.asarray(rows, dtype=np.float64).reshape(n, d) * scale
    if row_scales == "mixed" and n:
        offsets = draw(st.lists(st.sampled_from([-40, 0, 40]), min_size=n, max_size=n))
        emb *= 10.0 ** np.asarray(offsets, dtype=np.float64)[:, None]
    scores = draw(
        st.one_of(
            st.lists(st.integers(0, 3).map(float), min_size=n, max_size=n),  # many ties
            st.lists(st.floats(-1e300, 1e300), min_size=n, max_size=n),
        )
    )
    n_ref = draw(st.integers(0, 3))
    reference = [list(draw(st.sampled_from(pool))) for _ in range(n_ref)]
    for row in reference:
        if not any(row):
            row[-1] = -1.0
    reference = np.asarray(reference, dtype=np.float64).reshape(n_ref, d) * scale
    metric = draw(st.sampled_from(["cosine", "euclidean"]))
    normalize = draw(st.booleans())
    threshold = draw(st.sampled_from(THRESHOLDS))
    if metric == "euclidean" and not normalize:
        threshold *= scale * (10.0**40 if row_scales == "mixed" else 1.0)
    return dict(
        emb=emb,
        scores=np.asarray(scores, dtype=np.float64),
        reference=reference,
        metric=metric,
        normalize=normalize,
        threshold=threshold,
        neighbors=draw(st.sampled_from(["selected", "dataset"])),
        budget=draw(
            st.one_of(st.none(), st.integers(1, 45), st.sampled_from([0.05, 0.3, 0.7, 1.0]))
        ),
        block_size=draw(st.sampled_from([1, 2, 3, 7, 64, 1024])),
        as_list=draw(st.booleans()),
        use_reference=draw(st.booleans()),
    )


def _budget_rows(budget, n):
    if budget is None:
        return n
    if isinstance(budget, int):
        return budget
    percent = round(budget * 100)
    return -(-percent * n // 100)  # ceil, in integers: the fraction as written


def _is_own_check(exc: BaseException) -> bool:
    """Raised by skdeita itself (or scikit-learn's parameter check), as a ValueError/TypeError."""
    if not isinstance(exc, ValueError | TypeError):
        return False
    last = traceback.extract_tb(exc.__traceback__)[-1].filename
    return last.startswith(SKDEITA) or "_param_validation" in last


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=problems())
def test_blocked_selection_equals_the_plain_greedy_loop(p):
    emb, n = p["emb"], len(p["emb"])
    reference = p["reference"] if p["use_reference"] else None
    try:
        result = deita_select(
            list(emb) if p["as_list"] else emb,
            p["scores"],
            data_budget=p["budget"],
            diversity_threshold=p["threshold"],
            distance_metric=p["metric"],
            normalize_embeddings=p["normalize"],
            neighbors=p["neighbors"],
            block_size=p["block_size"],
            reference=reference,
        )
    except Exception as exc:  # noqa: BLE001 - what escapes is the point
        assert _is_own_check(exc), f"foreign {type(exc).__name__}: {exc}"
        raise
    budget = _budget_rows(p["budget"], n)
    kept, seen = plain_greedy(
        emb,
        p["scores"],
        budget,
        p["threshold"],
        metric=p["metric"],
        normalize=p["normalize"],
        neighbors=p["neighbors"],
        reference=[] if reference is None else reference,
    )
    assert result.selected.tolist() == kept
    assert result.budget == budget
    assert result.n_visited == len(seen)
    assert result.budget_reached == (len(kept) >= budget)
    visited = sorted(seen)
    assert np.isnan(np.delete(result.distances, visited)).all()
    got = result.distances[visited]
    want = np.array([seen[i] for i in visited])
    assert (np.isinf(got) == np.isinf(want)).all()
    finite = np.isfinite(want)
    scale = np.max(np.abs(want[finite]), initial=0.0) or 1.0
    atol = 1e-12 * (1.0 if p["metric"] == "cosine" or p["normalize"] else scale)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=atol)


@settings(max_examples=60, deadline=None)
@given(p=problems(), k=st.integers(-300, 300))
def test_normalised_cosine_selection_ignores_the_scale(p, k):
    """Any finite, non-zero scale of the whole matrix gives the same selection
    (the norm is never squared at 1e-300 or 1e300)."""
    emb = p["emb"] / np.max(np.abs(p["emb"]), initial=1.0)
    assume(len(emb))
    kwargs = dict(data_budget=p["budget"], diversity_threshold=THRESHOLDS[k % len(THRESHOLDS)])
    base = deita_select(emb, p["scores"], **kwargs)
    with np.errstate(over="ignore", under="ignore"):
        scaled = emb * 10.0**k
    assume(np.isfinite(scaled).all() and (np.abs(scaled).max(axis=1) > 0).all())
    assume(not (np.abs(scaled)[emb != 0] < 1e-300).any())  # no entry flushed to zero
    got = deita_select(scaled, p["scores"], **kwargs)
    assert got.selected.tolist() == base.selected.tolist()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    zero_at=st.integers(0, 11),
    metric=st.sampled_from(["cosine", "euclidean"]),
    normalize=st.booleans(),
)
def test_an_all_zero_row_is_named_or_measured(n, zero_at, metric, normalize):
    emb = np.ones((n, 3)) + np.arange(n)[:, None] * np.array([0.0, 1.0, 2.0])
    emb[zero_at % n] = 0.0
    try:
        result = deita_select(
            emb, np.arange(n, dtype=float), distance_metric=metric, normalize_embeddings=normalize
        )
    except ValueError as exc:
        assert metric == "cosine" or normalize
        assert f"positions [{zero_at % n}]" in str(exc) and "all-zero" in str(exc)
    else:
        assert metric == "euclidean" and not normalize
        assert len(result.selected) >= 1


@settings(max_examples=60, deadline=None)
@given(p=problems())
def test_threshold_zero_keeps_every_row_duplicates_included(p):
    """A distance is never negative: with threshold 0 nothing is too close,
    though rounding puts a duplicate's cosine similarity at 1 + 2e-16."""
    n = len(p["emb"])
    result = deita_select(
        p["emb"],
        p["scores"],
        diversity_threshold=0.0,
        distance_metric=p["metric"],
        normalize_embeddings=p["normalize"],
        neighbors=p["neighbors"],
        block_size=p["block_size"],
        reference=p["reference"] if p["use_reference"] else None,
    )
    assert sorted(result.selected.tolist()) == list(range(n))
    assert (result.distances >= 0).all()
