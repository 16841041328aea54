"""Scores per row from language models: DEITA's complexity and quality scorers, and
Superfiltering's IFD."""

from ._deita import ComplexityScorer, QualityScorer
from ._ifd import IFDScorer

__all__ = ["ComplexityScorer", "IFDScorer", "QualityScorer"]
