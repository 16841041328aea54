"""Test rankers whose limits and settings differ from the real PairRM's (1224 / 412)."""

from __future__ import annotations

import importlib.util

import pytest

# name: (make_tiny_pairrm keyword arguments). Each differs from PairRM in its
# limits and in settings llm-blender reads from the ranker's config.
ODD_RANKERS = {
    # DeBERTa-v2, 3 layers, 4 heads, 32 position buckets, c2p only, separate
    # position projections, a convolution after layer 0, 3 head outputs.
    "deberta-48-20": dict(
        num_layers=3,
        num_heads=4,
        source_maxlength=48,
        candidate_maxlength=20,
        n_tasks=3,
        drop_out=0.2,
        fp16=False,
        seed=1,
        backbone_config=dict(
            position_buckets=32,
            share_att_key=False,
            pos_att_type=["c2p"],
            conv_kernel_size=3,
            norm_rel_ebd="none",
        ),
    ),
    # DeBERTa-v2 without position buckets (max_relative_positions 64), p2c only.
    "deberta-100-16": dict(
        source_maxlength=100,
        candidate_maxlength=16,
        seed=2,
        backbone_config=dict(position_buckets=-1, max_relative_positions=64, pos_att_type=["p2c"]),
    ),
    # A BERT backbone (model_type "bert"): the generic encoder path.
    "bert-40-90": dict(
        backbone_type="bert",
        source_maxlength=40,
        candidate_maxlength=90,
        n_tasks=2,
        seed=3,
        config_model_name="bert-base-uncased",
    ),
}


# Backbones off PairRM's path: a causal LM (generic hidden-state path) and an
# encoder-decoder (llm-blender's own forward, row by row).
OTHER_BACKBONES = {
    "gpt2-64-24": dict(
        backbone_type="gpt2",
        source_maxlength=64,
        candidate_maxlength=24,
        seed=4,
        config_model_name="gpt2",
    ),
    "bart-32-40": dict(
        backbone_type="bart",
        source_maxlength=32,
        candidate_maxlength=40,
        n_tasks=2,
        seed=5,
        config_model_name="facebook/bart-base",
    ),
}


def _needs_pairrm():
    for needed in ("llm_blender", "sentencepiece", "torch"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed (pip install 'skdeita[pairrm]')")


@pytest.fixture(scope="session", params=sorted(ODD_RANKERS))
def odd_ranker_dir(request, tmp_path_factory):
    """A tiny ranker with non-default limits and settings (three kinds)."""
    _needs_pairrm()
    from skdeita._testing import make_tiny_pairrm

    path = tmp_path_factory.mktemp("odd-ranker") / request.param
    return make_tiny_pairrm(path, **ODD_RANKERS[request.param])


@pytest.fixture(scope="session", params=sorted(OTHER_BACKBONES))
def other_backbone_dir(request, tmp_path_factory):
    """A tiny ranker on a causal-LM or encoder-decoder backbone."""
    _needs_pairrm()
    from skdeita._testing import make_tiny_pairrm

    path = tmp_path_factory.mktemp("other-backbone") / request.param
    return make_tiny_pairrm(path, **OTHER_BACKBONES[request.param])


def reference_blender_for(path):
    """llm-blender's own Blender with the ranker at ``path`` (neutral folder names)."""
    from skdeita.pairrm._blender_compat import import_llm_blender

    blender = import_llm_blender().Blender()
    blender.loadranker(str(path), device="cpu", model_name=str(path / "backbone"))
    blender.blender_config.use_tqdm = False
    return blender


@pytest.fixture(scope="session")
def odd_blender(odd_ranker_dir):
    """llm-blender's own Blender with the odd ranker, loaded from a neutral path."""
    return reference_blender_for(odd_ranker_dir)
