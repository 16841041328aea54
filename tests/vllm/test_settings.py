"""The vLLM backend's checks that start no engine: backend_kwargs, the engine's
arguments, and the generation settings vLLM must reproduce.

These run in every environment; the few that read vLLM's source or import it
skip where vLLM is not installed, and one checks the install hint there.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from skdeita.scoring._vllm import check_generation_config, sampling_settings
from skdeita.utils._vllm import (
    CONTROLLED_KWARGS,
    check_backend_kwargs,
    engine_arg_names,
    engine_kwargs,
    kv_cache_bytes,
)

pytestmark = pytest.mark.vllm

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed here")
transformers = pytest.importorskip("transformers")


# -- backend_kwargs ---------------------------------------------------------------


def test_backend_kwargs_none_is_an_empty_dict():
    assert check_backend_kwargs(None) == {}


@pytest.mark.parametrize("value", [[("seed", 1)], "seed=1", 0.5])
def test_backend_kwargs_that_are_not_a_dict_name_the_parameter(value):
    with pytest.raises(TypeError, match="backend_kwargs must be a dict"):
        check_backend_kwargs(value)


def test_backend_kwargs_keys_must_be_strings():
    with pytest.raises(TypeError, match="keys must be strings"):
        check_backend_kwargs({1: 2})


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("dtype", "`dtype`"),
        ("max_model_len", "`max_length`"),
        ("trust_remote_code", "`trust_remote_code`"),
        ("logprobs_mode", "processed logits"),
        ("pooler_config", "`pooling`"),
        ("model", "`model`"),
    ],
)
def test_controlled_backend_kwargs_say_which_parameter_sets_them(key, says):
    with pytest.raises(ValueError, match=rf"backend_kwargs\['{key}'\] cannot be set") as info:
        check_backend_kwargs({key: 1})
    assert says in str(info.value)


def test_every_controlled_key_is_an_engine_argument():
    if not HAS_VLLM:
        pytest.skip("vLLM is not installed here")
    assert set(CONTROLLED_KWARGS) <= engine_arg_names()


@needs_vllm
def test_unknown_backend_kwargs_key_lists_close_matches():
    with pytest.raises(ValueError, match="unknown key 'gpu_memory_utilisation'") as info:
        check_backend_kwargs({"gpu_memory_utilisation": 0.5})
    assert "'gpu_memory_utilization'" in str(info.value)


@needs_vllm
def test_known_backend_kwargs_pass_unchanged():
    kwargs = {"gpu_memory_utilization": 0.45, "tensor_parallel_size": 2, "seed": 3}
    checked = check_backend_kwargs(kwargs)
    assert checked == kwargs and checked is not kwargs


@needs_vllm
def test_engine_arg_names_read_from_source_equal_the_dataclass_fields():
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    fields = {f.name for f in dataclasses.fields(EngineArgs) if not f.name.startswith("_")}
    assert engine_arg_names() == fields


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_gives_the_install_hint():
    engine_arg_names.cache_clear()
    with pytest.raises(ImportError, match=r"pip install 'skdeita\[vllm\]'"):
        check_backend_kwargs({"seed": 1})


# -- the engine's arguments -------------------------------------------------------


def _llama_config(**overrides):
    shape = dict(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_hidden_layers=2,
        vocab_size=240,
    )
    return transformers.LlamaConfig(**{**shape, **overrides})


@needs_vllm
def test_engine_kwargs_put_controlled_settings_first_and_user_kwargs_last():
    kwargs = engine_kwargs(
        "/m",
        dtype="float32",
        trust_remote_code=False,
        max_model_len=193,
        device="cuda",
        backend_kwargs={"gpu_memory_utilization": 0.3, "seed": 7},
        runner="generate",
        logprobs_mode="processed_logits",
    )
    assert kwargs == {
        "model": "/m",
        "dtype": "float32",
        "trust_remote_code": False,
        "max_model_len": 193,
        "runner": "generate",
        "logprobs_mode": "processed_logits",
        "gpu_memory_utilization": 0.3,
        "seed": 7,
    }


def test_cpu_engines_size_their_kv_cache_from_the_model():
    config = _llama_config()
    kwargs = engine_kwargs(
        "/m",
        dtype="float32",
        trust_remote_code=False,
        max_model_len=193,
        device="cpu",
        backend_kwargs=None,
        config=config,
    )
    assert kwargs["kv_cache_memory_bytes"] == kv_cache_bytes(config, "float32", 193)
    assert kwargs["enforce_eager"] is True
    assert "gpu_memory_utilization" not in kwargs


@needs_vllm
def test_cpu_memory_sized_by_the_user_is_kept():
    kwargs = engine_kwargs(
        "/m",
        dtype="float32",
        trust_remote_code=False,
        max_model_len=193,
        device="cpu",
        backend_kwargs={"gpu_memory_utilization": 0.2},
        config=_llama_config(),
    )
    assert kwargs["gpu_memory_utilization"] == 0.2
    assert "kv_cache_memory_bytes" not in kwargs


def test_kv_cache_bytes_count_keys_and_values_of_every_layer():
    # 2 (keys, values) x 2 layers x 2 kv heads x 64 dims x 4 bytes = 2 KiB a token.
    config = _llama_config()
    per_token = 2 * 2 * 2 * 64 * 4
    big = kv_cache_bytes(config, "float32", 100_000)
    assert big == max(4 << 30, per_token * 100_000)
    assert kv_cache_bytes(config, "float32", 10) == 64 << 20  # the floor
    assert kv_cache_bytes(config, "bfloat16", 100_000) == per_token // 2 * 100_000 * 32


# -- generation settings ----------------------------------------------------------


def _settings(**config):
    return sampling_settings(_resolved(**config))


def _resolved(**config):
    gen = transformers.GenerationConfig(**config)
    defaults = getattr(gen, "_get_default_generation_params", None)
    for name, value in (defaults() if defaults else {}).items():
        if getattr(gen, name, None) is None:
            setattr(gen, name, value)
    return gen


def test_greedy_generation_forces_greedy_sampling():
    # vLLM's own defaults would take temperature from the config and sample.
    assert _settings(temperature=0.7, top_p=0.9) == {"temperature": 0.0}


def test_repetition_penalty_is_applied():
    assert _settings(repetition_penalty=1.3) == {"repetition_penalty": 1.3, "temperature": 0.0}


def test_sampling_applies_temperature_top_k_and_top_p():
    settings = _settings(do_sample=True, temperature=0.5, top_k=7, top_p=0.9)
    assert settings == {"temperature": 0.5, "top_k": 7, "top_p": 0.9}


def test_sampling_without_top_k_uses_generates_default_top_k(tmp_path):
    # transformers 5 leaves top_k unset in the object and fills in 50 at generate.
    (tmp_path / "generation_config.json").write_text(json.dumps({"do_sample": True}))
    (tmp_path / "config.json").write_text(_llama_config().to_json_string())
    assert check_generation_config(tmp_path)["top_k"] == 50


def test_a_folder_without_generation_config_is_greedy(tmp_path):
    (tmp_path / "config.json").write_text(_llama_config().to_json_string())
    assert check_generation_config(tmp_path) == {"temperature": 0.0}


@pytest.mark.parametrize(
    "config",
    [
        {"no_repeat_ngram_size": 3},
        {"num_beams": 2},
        {"suppress_tokens": [5]},
        {"bad_words_ids": [[5]]},
        {"forced_eos_token_id": 2},
        {"sequence_bias": {(5,): -1.0}},
        {"do_sample": True, "min_p": 0.1},
        {"do_sample": True, "typical_p": 0.5},
        {"do_sample": True, "temperature": 3.0},
        {"do_sample": True, "temperature": 0.001},
    ],
    ids=lambda c: ",".join(c),
)
def test_settings_vllm_cannot_reproduce_are_refused_by_name(config):
    name = next(k for k in config if k != "do_sample")
    with pytest.raises(ValueError, match=rf"sets {name}=") as info:
        _settings(**config)
    assert "backend='transformers'" in str(info.value)


def test_harmless_settings_are_accepted():
    # They touch only the end-of-sequence token at the first step, or shift a
    # row by a constant: a softmax over the digits does not change.
    settings = _settings(min_new_tokens=3, renormalize_logits=True, max_length=4096, pad_token_id=0)
    assert settings == {"temperature": 0.0}
