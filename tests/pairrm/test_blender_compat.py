"""The transformers-5 repairs for llm-blender apply only where needed."""

from __future__ import annotations

import pytest

from skdeita.pairrm._blender_compat import (
    _batch_encode_plus,
    import_llm_blender,
    patch_transformers,
)

pytestmark = pytest.mark.pairrm
transformers = pytest.importorskip("transformers")
MAJOR = int(transformers.__version__.split(".")[0])


def test_llm_blender_imports_and_a_second_patch_changes_nothing():
    assert import_llm_blender().Blender is not None
    assert patch_transformers() == []


def test_repairs_match_the_transformers_major():
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    patched = PreTrainedTokenizerBase.batch_encode_plus is _batch_encode_plus
    assert patched == (MAJOR >= 5)


def test_restored_batch_encode_plus_equals_calling_the_tokenizer(tiny_ranker_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_ranker_dir / "backbone")
    texts = ["the sea at night", "a poem"]
    kwargs = dict(max_length=8, padding="max_length", truncation=True)
    assert tok.batch_encode_plus(texts, **kwargs)["input_ids"] == tok(texts, **kwargs)["input_ids"]
