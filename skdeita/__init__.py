"""scikit-learn estimators for curating LLM instruction-tuning data, DEITA style."""

from ._embedding import EmbeddingTransformer
from ._encoders import ModelNotFoundError
from ._pairrm import PairRMRanker
from ._preference import best_candidate, preference_pairs
from ._selection import SelectionResult, deita_select
from ._selector import BudgetNotReachedWarning, DeitaSelector

__version__ = "0.1.0"

__all__ = [
    "BudgetNotReachedWarning",
    "DeitaSelector",
    "EmbeddingTransformer",
    "ModelNotFoundError",
    "PairRMRanker",
    "SelectionResult",
    "deita_select",
    "preference_pairs",
    "__version__",
    "best_candidate",
]
