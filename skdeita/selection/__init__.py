"""DEITA's selection: scores, the exact greedy core, and DeitaSelector."""

from ._greedy import SelectionResult, deita_select
from ._selector import DeitaSelector
from ._threshold import ThresholdTable, threshold_table

__all__ = [
    "DeitaSelector",
    "SelectionResult",
    "ThresholdTable",
    "deita_select",
    "threshold_table",
]
