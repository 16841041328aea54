"""scikit-learn estimators for curating LLM instruction-tuning data, DEITA style."""

from ._config import config_context, get_config, set_config
from .embedding import EmbeddingTransformer
from .exceptions import BudgetNotReachedWarning, ModelNotFoundError
from .pairrm import PairRMRanker, best_candidate, preference_pairs
from .pipeline import make_deita_pipeline
from .scoring import ComplexityScorer, IFDScorer, QualityScorer
from .selection import (
    DeitaSelector,
    SelectionResult,
    ThresholdTable,
    deita_select,
    threshold_table,
)
from .utils._dask import local_cluster

__version__ = "0.1.0"

__all__ = [
    "BudgetNotReachedWarning",
    "ComplexityScorer",
    "DeitaSelector",
    "EmbeddingTransformer",
    "IFDScorer",
    "ModelNotFoundError",
    "PairRMRanker",
    "QualityScorer",
    "SelectionResult",
    "ThresholdTable",
    "deita_select",
    "make_deita_pipeline",
    "threshold_table",
    "preference_pairs",
    "__version__",
    "best_candidate",
    "config_context",
    "get_config",
    "local_cluster",
    "set_config",
]
