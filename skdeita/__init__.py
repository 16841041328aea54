"""scikit-learn estimators for curating LLM instruction-tuning data, DEITA style."""

from .embedding import EmbeddingTransformer
from .exceptions import BudgetNotReachedWarning, ModelNotFoundError
from .pairrm import PairRMRanker, best_candidate, preference_pairs
from .selection import DeitaSelector, SelectionResult, deita_select

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
