"""DEITA's selection: scores, the exact greedy core, and DeitaSelector."""

from ._greedy import SelectionResult, deita_select
from ._selector import DeitaSelector

__all__ = ["DeitaSelector", "SelectionResult", "deita_select"]
