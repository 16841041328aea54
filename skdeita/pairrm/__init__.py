"""PairRM through llm-blender: PairRMRanker, preference pairs, best candidate."""

from ._preference import best_candidate, preference_pairs
from ._ranker import PairRMRanker

__all__ = ["PairRMRanker", "best_candidate", "preference_pairs"]
