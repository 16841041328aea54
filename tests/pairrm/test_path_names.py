"""What is loaded depends on the ranker's files, never on the names of its folders.

llm-blender's loader reads substrings of the backbone path: "alpaca"/"llama"
pad on the left, "starling-rm" fetches another tokenizer from the hub, "phi"
(also in "/home/phil" or "dolphin") turns on trust_remote_code and adds a
separator token. skdeita decides from the config and the tokenizer files.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from skdeita import ModelNotFoundError, PairRMRanker

pytestmark = [
    pytest.mark.pairrm,
    pytest.mark.filterwarnings("ignore::RuntimeWarning:dataclasses_json"),
]

# Substrings llm-blender reacts to (or that look like model types), as folder names.
TRIGGERS = [
    "phi",
    "dolphin",
    "home/phil",
    "llama",
    "alpaca",
    "starling-rm",
    "Starling-RM",
    "t5",
    "bart",
    "deberta",
]
LAYOUTS = ["backbone-inside", "backbone-argument", "backbone-in-config"]

ROWS = pd.DataFrame(
    {
        "input": ["write a poem about the sea at night " * 3, "sort the numbers please"],
        "candidates": [
            ["the sea " * 20, "night wind and salt water", "a poem"],
            ["1 3 5 9", "9 5 3 1 " * 12, "order the list", "1 3 5 9"],
        ],
    }
)


def place(ranker_dir, root, name: str, layout: str):
    """Copy the ranker under ``root/name``; return PairRMRanker's (model, backbone)."""
    target = root / f"{name}-ranker"
    shutil.copytree(ranker_dir, target)
    if layout == "backbone-inside":  # <ranker>/backbone: the path holds the name
        return target, None
    backbone = root / f"{name}-backbone"
    shutil.move(target / "backbone", backbone)
    if layout == "backbone-argument":
        return target, backbone
    config = json.loads((target / "config.json").read_text())
    config["model_name"] = str(backbone)  # the backbone name the config records
    (target / "config.json").write_text(json.dumps(config))
    return target, None


def rank(model, backbone=None, **kwargs):
    ranker = PairRMRanker(
        str(model),
        backbone=None if backbone is None else str(backbone),
        return_scores=True,
        show_progress_bar=False,
        **kwargs,
    )
    return ranker.fit_transform(ROWS)


@pytest.fixture(scope="module")
def neutral(tiny_ranker_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("neutral")
    model, backbone = place(tiny_ranker_dir, root, "plain", "backbone-in-config")
    return rank(model, backbone)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", TRIGGERS)
def test_folder_names_change_nothing(tiny_ranker_dir, tmp_path, neutral, name, layout):
    model, backbone = place(tiny_ranker_dir, tmp_path, name, layout)
    out = rank(model, backbone)
    assert out["ranks"].tolist() == neutral["ranks"].tolist()
    np.testing.assert_array_equal(np.concatenate(out["scores"]), np.concatenate(neutral["scores"]))


def test_neutral_copy_equals_llm_blender(neutral, reference_blender):
    for k, (src, cands) in enumerate(zip(ROWS["input"], ROWS["candidates"], strict=True)):
        theirs = reference_blender.rank([src], [cands], return_scores=True, batch_size=1)[0]
        np.testing.assert_allclose(neutral["scores"].iloc[k], theirs, rtol=1e-4, atol=1e-3)


def test_llm_blender_itself_reads_the_names(tiny_ranker_dir, tmp_path):
    """The heuristics are real: llm-blender's tokenizer pads left under "llama"."""
    from llm_blender.pair_ranker.model_util import build_tokenizer

    from skdeita.pairrm._loading import load_ranker

    model, _ = place(tiny_ranker_dir, tmp_path, "llama", "backbone-inside")
    assert build_tokenizer(str(model / "backbone")).padding_side == "left"
    assert load_ranker(str(model)).tokenizer.padding_side == "right"  # the tokenizer's own


# -- trust_remote_code ----------------------------------------------------------------------


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record the trust_remote_code of every from_pretrained call (the real ones run)."""
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    config_base = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
    calls = []
    for cls in (
        transformers.AutoTokenizer,
        transformers.AutoConfig,
        _BaseAutoModelClass,
        transformers.PreTrainedModel,
        PreTrainedTokenizerBase,
        config_base,
    ):
        func = cls.__dict__["from_pretrained"].__func__

        def spy(klass, *args, _func=func, _owner=cls.__name__, **kwargs):
            calls.append((_owner, kwargs.get("trust_remote_code")))
            return _func(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls


def test_no_remote_code_by_default_even_under_a_phi_name(
    tiny_ranker_dir, tmp_path, from_pretrained_calls
):
    model, backbone = place(tiny_ranker_dir, tmp_path / "home" / "phil", "dolphin-phi", LAYOUTS[2])
    rank(model, backbone)
    assert len(from_pretrained_calls) >= 2  # tokenizer and backbone, at least
    assert all(trust is not True for _, trust in from_pretrained_calls), from_pretrained_calls


def test_remote_code_only_when_asked(tiny_ranker_dir, tmp_path, from_pretrained_calls):
    model, _ = place(tiny_ranker_dir, tmp_path, "asked", LAYOUTS[0])
    rank(model, trust_remote_code=True)
    assert any(trust is True for _, trust in from_pretrained_calls)


def test_llm_blender_turns_remote_code_on_for_phi(tiny_ranker_dir, tmp_path, from_pretrained_calls):
    """The spy sees it: llm-blender's loader under a "phi" name (then fails to load)."""
    from skdeita.pairrm._blender_compat import import_llm_blender

    model, _ = place(tiny_ranker_dir, tmp_path, "phi", LAYOUTS[0])
    blender = import_llm_blender().Blender()
    with pytest.raises(RuntimeError):  # the added separator no longer fits the weights
        blender.loadranker(str(model), device="cpu", model_name=str(model / "backbone"))
    assert any(trust is True for _, trust in from_pretrained_calls)


def test_only_pairwise_rankers_are_accepted(tiny_ranker_dir, tmp_path):
    model, _ = place(tiny_ranker_dir, tmp_path, "other", LAYOUTS[0])
    config = json.loads((model / "config.json").read_text())
    config["ranker_type"] = "summareranker"
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="ranker_type='summareranker'.*pairranker"):
        rank(model)


def test_missing_backbone_names_where_to_put_it(tiny_ranker_dir, tmp_path):
    model, _ = place(tiny_ranker_dir, tmp_path, "nobackbone", LAYOUTS[0])
    shutil.rmtree(model / "backbone")  # config names microsoft/deberta-v3-large
    with pytest.raises(ModelNotFoundError, match="backbone=DIR"):
        rank(model)
