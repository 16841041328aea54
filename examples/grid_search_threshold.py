"""Choose diversity_threshold by grid search, with no labels.

Embed once, then search only the selector: DeitaSelector.score (quality-
weighted coverage) is what GridSearchCV maximises.
"""

import warnings

from sklearn.model_selection import GridSearchCV

from skdeita import BudgetNotReachedWarning, DeitaSelector, EmbeddingTransformer, metrics
from skdeita.datasets import load_sample

pool = load_sample()
embedded = EmbeddingTransformer(
    template="{instruction}\n\n{response}", show_progress_bar=False
).fit_transform(pool)

search = GridSearchCV(
    DeitaSelector(data_budget=0.2),
    {"diversity_threshold": [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]},
    scoring={"coverage": metrics.quality_coverage_scorer, "fill": metrics.budget_fill_scorer},
    refit="coverage",
    cv=3,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", BudgetNotReachedWarning)  # high thresholds miss the budget
    search.fit(embedded)

for t, cov, fill in zip(  # noqa: B905
    search.cv_results_["param_diversity_threshold"],
    search.cv_results_["mean_test_coverage"],
    search.cv_results_["mean_test_fill"],
):
    print(f"threshold {t:<5} coverage {cov:.3f}  budget filled {fill:.0%}")
print("best:", search.best_params_)
assert 0.0 < search.best_params_["diversity_threshold"] < 0.8
