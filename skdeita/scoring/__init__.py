"""Scores per row from language models: DEITA's complexity and quality scorers."""

from ._deita import ComplexityScorer, QualityScorer

__all__ = ["ComplexityScorer", "QualityScorer"]
