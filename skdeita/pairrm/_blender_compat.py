"""Repairs that let llm-blender 0.0.2 run on transformers 5.

llm-blender 0.0.2 (the last release) was written against transformers 4:

1. ``llm_blender.blender.blender`` imports ``TRANSFORMERS_CACHE`` from
   ``transformers.utils.hub``; transformers 5 removed that constant, so
   ``import llm_blender`` fails. We define it (as the hub cache directory)
   before the import.
2. Its collator calls ``tokenizer.batch_encode_plus``, which transformers 5
   removed from tokenizers; calling the tokenizer does the same. We add the
   method back to the tokenizer base class.

Each repair is applied only when PairRM loads and only when the name is
missing, so on transformers 4.57 nothing is touched.
"""

from __future__ import annotations

from ..utils._optional import require


def _hub_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:  # very old huggingface_hub
        import os

        return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def _batch_encode_plus(self, batch_text_or_text_pairs, *args, **kwargs):
    """transformers 4's ``batch_encode_plus``: the tokenizer called on a batch."""
    return self(batch_text_or_text_pairs, *args, **kwargs)


def patch_transformers() -> list[str]:
    """Apply the missing repairs; return the names of those applied."""
    applied = []
    hub = require("transformers.utils.hub", "PairRMRanker")
    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        hub.TRANSFORMERS_CACHE = _hub_cache()
        applied.append("transformers.utils.hub.TRANSFORMERS_CACHE")
    base = require("transformers.tokenization_utils_base", "PairRMRanker")
    cls = base.PreTrainedTokenizerBase
    if not hasattr(cls, "batch_encode_plus"):
        cls.batch_encode_plus = _batch_encode_plus
        applied.append("PreTrainedTokenizerBase.batch_encode_plus")
    return applied


def import_llm_blender():
    """``import llm_blender`` with the repairs this transformers needs."""
    patch_transformers()
    return require("llm_blender", "PairRMRanker")
