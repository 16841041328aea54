"""Loading Hugging Face models from a hub name or a local directory.

Shared by every model-backed estimator: what a local model directory must
hold, the error that says how to get a model when no hub is reachable, the
dtype names, and a model's context length.
"""

from __future__ import annotations

from pathlib import Path

from ..exceptions import ModelNotFoundError

_REQUIRED_FILES = {
    "sentence-transformers": [("config.json",), ("model.safetensors", "pytorch_model.bin")],
    "transformers": [
        ("config.json",),
        ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"),
    ],
}


def check_local_model_dir(path: str, backend: str) -> None:
    """A local model directory must hold a config and weights; say what is missing."""
    p = Path(path)
    if not p.is_dir():
        return
    missing = [
        " or ".join(alts)
        for alts in _REQUIRED_FILES[backend]
        if not any((p / a).exists() for a in alts)
    ]
    if missing:
        raise ModelNotFoundError(f"Model directory {path} is missing {', '.join(missing)}.")


def not_found(model: str, exc: Exception, hint: str = "") -> ModelNotFoundError:
    """The error for a model that cannot be loaded, saying how to get it."""
    return ModelNotFoundError(
        f"Could not load model {model!r}: {exc}. No model hub is reached when "
        "HF_HUB_OFFLINE=1 or without network: pass a local directory, or download "
        f"it once with `huggingface-cli download {model} --local-dir DIR`.{hint}"
    )


def torch_dtype(torch, dtype: str):
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def model_max_length(tokenizer, model) -> int:
    """The tokenizer's limit, capped by the model's position embeddings."""
    limits = [
        getattr(tokenizer, "model_max_length", None),
        getattr(model.config, "max_position_embeddings", None),
    ]
    limits = [v for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else 512
