"""Checks every skdeita estimator passes: scikit-learn's API checks, the
estimator contract of ``skdeita.base``, and the DataFrame-level invariants
that scikit-learn's data checks cannot test here.

scikit-learn runs its data checks only on estimators that take numeric 2-D
arrays; every skdeita estimator takes a DataFrame of named text, vector or
score columns (tags: ``two_d_array=False, string=True``), so
``check_estimator`` itself runs only ``check_estimator_cloneable``
(``test_sklearn_check_estimator`` asserts exactly that). The API checks below
apply to any estimator and are run explicitly on each; the ones skipped are
listed with their reason.
"""

from __future__ import annotations

import ast
import copy
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.utils.estimator_checks as sk_checks
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

import skdeita
from skdeita import (
    ComplexityScorer,
    DeitaSelector,
    EmbeddingTransformer,
    IFDScorer,
    PairRMRanker,
    QualityScorer,
)
from skdeita.base import FrameTransformerMixin

ALL_ESTIMATORS = [
    DeitaSelector,
    EmbeddingTransformer,
    PairRMRanker,
    ComplexityScorer,
    QualityScorer,
    IFDScorer,
]

API_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_estimators_unfitted",
    "check_transformers_unfitted",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_n_features_in_after_fitting",
    "check_mixin_order",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_param_validation",
]

# scikit-learn checks not run, with the reason. Each feeds a bare numeric
# array, which no skdeita estimator takes (scikit-learn skips them all for
# two_d_array=False); the invariant each protects is tested on DataFrames
# below where it applies.
SKIPPED_CHECKS = {
    "check_fit_score_takes_y": "numeric array input; see test_fit_returns_self",
    "check_estimators_overwrite_params": "numeric array input; see test_fit_keeps_params",
    "check_dont_overwrite_parameters": "numeric array input; see test_fit_keeps_params",
    "check_estimators_fit_returns_self": "numeric array input; see test_fit_returns_self",
    "check_readonly_memmap_input": "numeric array input",
    "check_positive_only_tag_during_fit": "numeric array input",
    "check_estimators_pickle": "numeric array input; see test_pickle_round_trip",
    "check_fit_check_is_fitted": "numeric array input; see test_unfitted_transform_raises",
    "check_requires_y_none": "numeric array input; y is never used",
    "check_n_features_in": "numeric array input; see test_records_input_columns",
    "check_dict_unchanged": "numeric array input; see test_transform_keeps_fitted_state",
    "check_transformer_general": "DeitaSelector returns a subset of rows by design",
    "check_transformer_data_not_an_array": "numeric array input",
}


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("check", API_CHECKS)
def test_sklearn_api_check(estimator, check):
    getattr(sk_checks, check)(estimator.__name__, estimator())


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda c: c.__name__)
def test_sklearn_check_estimator(estimator):
    # What check_estimator runs on a DataFrame estimator, all of it, passing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its SkipTestWarning says why it runs no more
        results = check_estimator(estimator(), on_fail=None, on_skip=None)
    assert [(r["check_name"], r["status"]) for r in results] == [
        ("check_estimator_cloneable", "passed")
    ]


def test_skipped_checks_exist_in_scikit_learn():
    missing = [name for name in SKIPPED_CHECKS if not hasattr(sk_checks, name)]
    assert not missing


# -- DataFrame-level invariants, on tiny local models --------------------------


@pytest.fixture(scope="module")
def cases(request, minilm_path, tmp_path_factory):
    """A fitted-ready estimator and an input frame for each family."""
    rng = np.random.default_rng(0)
    texts = ["How do I sort a list?", "Bake bread at home.", "Explain sleep.", "Hi"]
    selector_frame = pd.DataFrame(
        {
            "embedding": list(rng.normal(size=(4, 3))),
            "evol_instruction_score": [1.0, 2.0, 3.0, 4.0],
            "evol_response_score": [2.0, 2.0, 2.0, 2.0],
        },
        index=[10, 11, 12, 13],
    )
    text_frame = pd.DataFrame(
        {"instruction": texts, "response": ["Use sorted.", "Knead.", "Rest.", "Hello"]},
        index=[10, 11, 12, 13],
    )
    out = {
        "DeitaSelector": (DeitaSelector(), selector_frame),
        "EmbeddingTransformer": (
            EmbeddingTransformer(minilm_path, text_col="instruction", show_progress_bar=False),
            text_frame,
        ),
    }
    from skdeita._testing import make_tiny_gpt2

    scorer = request.getfixturevalue("tiny_scorer_dir")
    out["ComplexityScorer"] = (ComplexityScorer(scorer, show_progress_bar=False), text_frame)
    out["QualityScorer"] = (QualityScorer(scorer, show_progress_bar=False), text_frame)
    gpt2 = make_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))
    out["IFDScorer"] = (IFDScorer(gpt2, max_length=128, show_progress_bar=False), text_frame)
    ranker = request.getfixturevalue("tiny_ranker_dir")
    ranked = pd.DataFrame(
        {"input": texts[:2], "candidates": [["a", "b", "c"], ["x", "y"]]}, index=["r1", "r2"]
    )
    out["PairRMRanker"] = (PairRMRanker(str(ranker), device="cpu", show_progress_bar=False), ranked)
    return out


FAMILIES = [cls.__name__ for cls in ALL_ESTIMATORS]


# -- the estimator contract (skdeita.base.FrameTransformerMixin) ---------------


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=lambda c: c.__name__)
def test_every_estimator_states_its_columns_and_its_input_check(estimator):
    # _check_params is optional: the mixin's default adds no rule.
    assert issubclass(estimator, FrameTransformerMixin)
    for hook in ("_input_columns", "_added_columns", "_check_input"):
        assert getattr(estimator, hook) is not getattr(FrameTransformerMixin, hook), hook


@pytest.mark.parametrize("name", FAMILIES)
def test_check_input_returns_the_frame_and_what_is_computed_from_it(cases, name):
    est, X = cases[name]
    frame, prepared = clone(est)._check_input(X)
    assert frame.index.equals(X.index) and list(frame.columns) == list(X.columns)
    assert prepared is not None


@pytest.mark.parametrize("name", FAMILIES)
def test_input_columns_are_the_columns_read(cases, name):
    est, X = cases[name]
    columns = [c for c in clone(est)._input_columns().values() if c is not None]
    assert columns and set(columns) <= set(X.columns)
    with pytest.raises(ValueError, match=repr(columns[0])):
        clone(est)._check_input(X.drop(columns=columns[0]))


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_returns_self(cases, name):
    est, X = cases[name]
    est = clone(est)
    assert est.fit(X) is est


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_keeps_params(cases, name):
    est, X = cases[name]
    est = clone(est)
    before = copy.deepcopy(est.get_params())
    est.fit(X)
    after = est.get_params()
    assert {k: repr(v) for k, v in before.items()} == {k: repr(v) for k, v in after.items()}


@pytest.mark.parametrize("name", FAMILIES)
def test_unfitted_transform_raises(cases, name):
    from sklearn.exceptions import NotFittedError

    est, X = cases[name]
    with pytest.raises(NotFittedError):
        clone(est).transform(X)


@pytest.mark.parametrize("name", FAMILIES)
def test_records_input_columns(cases, name):
    est, X = cases[name]
    est = clone(est).fit(X)
    assert est.n_features_in_ == X.shape[1]
    assert est.feature_names_in_.tolist() == [str(c) for c in X.columns]


@pytest.mark.parametrize("name", FAMILIES)
def test_transform_never_mutates_the_input(cases, name):
    est, X = cases[name]
    snapshot = X.copy(deep=True)
    clone(est).fit_transform(X)
    pd.testing.assert_frame_equal(X, snapshot)


@pytest.mark.parametrize("name", FAMILIES)
def test_feature_names_out_name_the_output_columns(cases, name):
    est, X = cases[name]
    est = clone(est)
    out = est.fit_transform(X)
    assert est.get_feature_names_out().tolist() == out.columns.tolist()


@pytest.mark.parametrize("name", FAMILIES)
def test_transform_keeps_fitted_state(cases, name):
    est, X = cases[name]
    est = clone(est).fit(X)
    before = {k: repr(v) for k, v in vars(est).items() if k.endswith("_")}
    est.transform(X)
    assert {k: repr(v) for k, v in vars(est).items() if k.endswith("_")} == before


@pytest.mark.parametrize("name", FAMILIES)
def test_pickle_round_trip(cases, name):
    est, X = cases[name]
    est = clone(est).fit(X)
    expected = est.transform(X)
    blob = pickle.dumps(est)
    assert len(blob) < 100_000  # parameters only, never weights
    restored = pickle.loads(blob)
    assert "_model" not in vars(restored)
    pd.testing.assert_frame_equal(restored.transform(X), expected)


# -- imports point one way -------------------------------------------------------

PACKAGE = Path(skdeita.__file__).parent
UPPER = {"skdeita.metrics", "skdeita.plotting", "skdeita.pipeline", "skdeita.cli"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in a file, relative ones resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


@pytest.mark.parametrize(
    "family", ["base.py", "exceptions.py", "selection", "scoring", "embedding", "pairrm", "utils"]
)
def test_no_family_imports_what_is_built_on_it(family):
    files = [PACKAGE / family] if family.endswith(".py") else (PACKAGE / family).rglob("*.py")
    for path in files:
        for module, _ in _imports(path):
            assert not any(module.startswith(up) for up in UPPER), (path.name, module)


@pytest.mark.parametrize("module", ["metrics.py", "plotting.py"])
def test_metrics_and_plotting_use_only_what_selection_exports(module):
    import skdeita.selection

    for imported, names in _imports(PACKAGE / module):
        if imported.startswith("skdeita.selection"):
            assert imported == "skdeita.selection", imported
            assert set(names) <= set(skdeita.selection.__all__), names
