"""What the three estimators share: DataFrame in, DataFrame out."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted


class FrameTransformerMixin:
    """Tags, input-column bookkeeping and output names of a DataFrame transformer."""

    def _record_columns(self, X: pd.DataFrame) -> None:
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)

    def _names_out(self, input_features, added: list[str]) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        names = list(self.feature_names_in_ if input_features is None else input_features)
        return np.asarray(names + [c for c in added if c not in names], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A DataFrame with named text/vector/score columns, not a numeric 2-D
        # array: scikit-learn's data checks (which feed numeric arrays) do not
        # apply. Deterministic, needs fit, no target.
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.target_tags.required = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
