"""Outcomes read back from an annotated selection: status, closest blocked
pairs and their blocking rows (found again for files without the columns)."""

from __future__ import annotations

from skdeita.report._outcomes import closest_blocked, row_status

from .conftest import annotate_by_loop


def test_the_pairs_are_the_closest_blocked_rows_with_their_blockers(annotated):
    status = row_status(annotated)
    pairs = closest_blocked(
        annotated,
        status,
        20,
        embedding_col="embedding",
        distance_metric="cosine",
        normalize_embeddings=True,
        neighbors="selected",
    )
    blocked = annotated[annotated.deita_status == "blocked"]
    expected = blocked.sort_values("nearest_neighbor_distance", kind="stable").head(20)
    assert [p[0] for p in pairs] == expected.index.tolist()
    assert [p[1] for p in pairs] == expected["deita_blocked_by"].tolist()
    assert pairs[0] == ("row-5", "row-4", 0.0)


def test_files_without_status_columns_get_the_same_outcomes_and_blockers(annotated):
    old = annotated.drop(columns=["deita_status", "deita_blocked_by"])
    assert (row_status(old) == annotated["deita_status"].to_numpy()).all()
    params = dict(
        embedding_col="embedding",
        distance_metric="cosine",
        normalize_embeddings=True,
        neighbors="selected",
    )
    new_pairs = closest_blocked(annotated, row_status(annotated), 20, **params)
    old_pairs = closest_blocked(old, row_status(old), 20, **params)
    assert old_pairs == new_pairs


def test_dataset_rule_blockers_are_found_again(pool):
    frame = annotate_by_loop(pool, budget=100, threshold=0.05, neighbors="dataset")
    params = dict(
        embedding_col="embedding",
        distance_metric="cosine",
        normalize_embeddings=True,
        neighbors="dataset",
    )
    old = frame.drop(columns=["deita_status", "deita_blocked_by"])
    assert closest_blocked(old, row_status(old), 20, **params) == closest_blocked(
        frame, row_status(frame), 20, **params
    )
