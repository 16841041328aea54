"""Tiny random models built at test time, for the tests, examples and benchmarks.

No model hub is reachable where skdeita is tested: each builder writes a
small randomly initialised model (with a tokenizer trained on the spot) in
the layout the real loader reads, so the real loading code runs.
"""

from ._causal_lm import GENERATION_CONFIGS, make_tiny_gpt2, make_tiny_llama_scorer
from ._pairrm import make_tiny_pairrm

__all__ = ["GENERATION_CONFIGS", "make_tiny_gpt2", "make_tiny_llama_scorer", "make_tiny_pairrm"]
