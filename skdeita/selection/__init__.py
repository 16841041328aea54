"""DEITA's selection: scores, the exact greedy core, DeitaSelector, coverage."""

from ._coverage import quality_coverage
from ._greedy import SelectionResult, deita_select, resolve_budget
from ._selector import DeitaSelector
from ._threshold import ThresholdTable, threshold_table

__all__ = [
    "DeitaSelector",
    "SelectionResult",
    "ThresholdTable",
    "deita_select",
    "quality_coverage",
    "resolve_budget",
    "threshold_table",
]
