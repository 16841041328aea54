"""Attribution (``output="annotate"``): what happened to every row, and why,
against a plain one-row-at-a-time loop written here; the same for any block
size, to the last bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from skdeita import DeitaSelector


def plain_walk(emb, scores, budget, threshold, *, neighbors="selected", reference=None):
    """Every row's fate, one row at a time, with ``cdist``.

    Returns ``{position: (status, rank, distance, nearest, visit)}``; ``nearest``
    is a position, ``("reference", r)`` or None. Ties: under the paper rule the
    row kept first (reference rows before all); under the dataset rule a
    reference row, then the first row of the input.
    """
    emb = np.asarray(emb, dtype=np.float64)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ref = np.empty((0, emb.shape[1])) if reference is None else np.asarray(reference, float)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True) if len(ref) else ref
    scored = [i for i in range(len(emb)) if not np.isnan(scores[i])]
    order = sorted(scored, key=lambda i: -float(scores[i]))  # stable: ties in input order
    fate = {i: ("excluded", None, np.nan, None, None) for i in range(len(emb))}
    fate.update({i: ("over_budget", None, np.nan, None, None) for i in scored})
    kept: list[int] = []
    for visit, i in enumerate(order, start=1):
        if len(kept) >= budget:
            break
        if neighbors == "selected":
            names = [("reference", r) for r in range(len(ref))] + kept
            others = np.vstack([ref, emb[kept]])
        else:
            rest = [j for j in scored if j != i]
            names = [("reference", r) for r in range(len(ref))] + rest
            others = np.vstack([ref, emb[rest]])
        if len(others):
            d = cdist(emb[i : i + 1], others, "cosine")[0]
            j = int(np.argmin(d))  # the first on a tie
            distance, nearest = float(d[j]), names[j]
        else:
            distance, nearest = np.inf, None
        if distance >= threshold:
            kept.append(i)
            fate[i] = ("kept", len(kept), distance, None, visit)
        else:
            fate[i] = ("blocked", None, distance, nearest, visit)
    return fate


def make_pool(seed, n=90, dim=5):
    """Clusters, exact duplicates, tied scores, a few rows without a score."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim))
    emb = centers[rng.integers(0, 6, n)] + 0.3 * rng.normal(size=(n, dim))
    emb[rng.integers(0, n, n // 8)] = emb[rng.integers(0, n, n // 8)]
    scores = rng.integers(1, 5, n).astype(float)
    scores[rng.integers(0, n, 4)] = np.nan
    reference = np.vstack([emb[rng.integers(0, n, 4)], rng.normal(size=(4, dim))])
    return emb, scores, reference


def annotated(emb, scores, labels, *, reference=None, **params):
    quality = np.where(np.isnan(scores), np.nan, 1.0)  # a row has both scores or none
    frame = pd.DataFrame(
        {"embedding": list(emb), "evol_instruction_score": scores, "evol_response_score": quality},
        index=labels,
    )
    selector = DeitaSelector(output="annotate", missing_scores="drop", reference=reference)
    return selector.set_params(**params).fit_transform(frame)


@pytest.mark.filterwarnings("ignore::UserWarning")  # rows without a score, budget not reached
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
@pytest.mark.parametrize("block_size", [1, 3, 1024])
@pytest.mark.parametrize("reference", [None, "array", "frame"])
@pytest.mark.parametrize("budget", [None, 20])
def test_every_row_says_what_happened_as_the_plain_loop(
    seed, neighbors, block_size, reference, budget
):
    emb, scores, ref = make_pool(seed)
    labels = [f"r{i}" for i in range(len(emb))]
    ref_labels = [f"c{r}" for r in range(len(ref))]
    given = {None: None, "array": ref, "frame": pd.DataFrame({"embedding": list(ref)}, ref_labels)}
    out = annotated(
        emb, scores, labels, reference=given[reference], data_budget=budget,
        diversity_threshold=0.05, neighbors=neighbors, block_size=block_size,
    )  # fmt: skip
    fate = plain_walk(
        emb, scores, budget or len(emb), 0.05, neighbors=neighbors,
        reference=None if reference is None else ref,
    )  # fmt: skip
    for i, label in enumerate(labels):
        status, rank, distance, nearest, visit = fate[i]
        row = out.loc[label]
        assert row["deita_status"] == status, label
        assert row["deita_selected"] == (status == "kept")
        assert (pd.isna(row["deita_rank"]) and rank is None) or row["deita_rank"] == rank
        assert (pd.isna(row["deita_visit"]) and visit is None) or row["deita_visit"] == visit
        np.testing.assert_allclose(row["nearest_neighbor_distance"], distance, atol=1e-12)
        blocking = nearest if isinstance(nearest, int) else None
        assert row["deita_blocked_by"] == (None if blocking is None else labels[blocking])
        if reference is None:
            assert "deita_blocked_by_reference" not in out.columns
            continue
        by_ref = nearest[1] if isinstance(nearest, tuple) else None
        want = None if by_ref is None else (ref_labels[by_ref] if reference == "frame" else by_ref)
        assert row["deita_blocked_by_reference"] == want


def test_a_tie_goes_to_the_row_kept_first():
    # c is as far from a as from b (the same bits both ways): a was kept first.
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = annotated(emb, np.array([3.0, 2.0, 1.0]), ["a", "b", "c"], diversity_threshold=0.5)
    assert out.loc["c", "deita_blocked_by"] == "a"
    assert out["deita_status"].tolist() == ["kept", "kept", "blocked"]


def test_a_row_blocked_by_a_reference_row_names_it_in_its_own_column():
    curated = pd.DataFrame({"embedding": [[1.0, 0.0], [0.0, 1.0]]}, index=["c1", "c2"])
    emb = np.array([[0.99, 0.05], [0.7, 0.7], [0.72, 0.69], [-1.0, 0.1]])
    out = annotated(
        emb, np.array([4.0, 3.0, 2.0, np.nan]), ["a", "b", "c", "d"], reference=curated,
        data_budget=3, diversity_threshold=0.1,
    )  # fmt: skip
    assert out["deita_status"].tolist() == ["blocked", "kept", "blocked", "excluded"]
    assert out["deita_blocked_by"].tolist() == [None, None, "b", None]
    assert out["deita_blocked_by_reference"].tolist() == ["c1", None, None, None]


def test_rows_past_the_filled_budget_are_over_budget():
    emb = np.eye(6)
    out = annotated(emb, np.arange(6.0, 0.0, -1.0), list("abcdef"), data_budget=2)
    assert out["deita_status"].tolist() == ["kept"] * 2 + ["over_budget"] * 4
    assert out["nearest_neighbor_distance"].isna().tolist() == [False] * 2 + [True] * 4
    assert out["deita_visit"].isna().tolist() == [False] * 2 + [True] * 4


def test_status_is_a_category_of_the_four_outcomes():
    out = annotated(np.eye(3), np.array([1.0, 2.0, np.nan]), list("abc"))
    assert list(out["deita_status"].cat.categories) == [
        "kept",
        "blocked",
        "over_budget",
        "excluded",
    ]
    assert out["deita_blocked_by"].dtype == object


@pytest.mark.filterwarnings("ignore::skdeita.BudgetNotReachedWarning")
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
@pytest.mark.parametrize("output", ["subset", "annotate"])
def test_any_block_size_gives_the_same_output_to_the_last_bit(neighbors, output):
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(40, 32))
    emb = centers[rng.integers(0, 40, 1500)] + 0.15 * rng.normal(size=(1500, 32))
    frame = pd.DataFrame(
        {
            "embedding": list(emb.astype(np.float32)),
            "evol_instruction_score": rng.integers(1, 7, 1500).astype(float),
            "evol_response_score": rng.uniform(1, 6, 1500).round(1),
        }
    )
    params = dict(diversity_threshold=0.05, neighbors=neighbors, output=output)
    budget = 300 if neighbors == "selected" else 60
    expected = DeitaSelector(budget, block_size=1, **params).fit_transform(frame)
    for block_size in (2, 5, 64, 1024, 4096):
        got = DeitaSelector(budget, block_size=block_size, **params).fit_transform(frame)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
