"""Loading Hugging Face models from a hub name or a local directory.

Shared by every model-backed estimator: what a local model directory must
hold, the error that says how to get a model when no hub is reachable, the
dtype names, and a model's context length.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..exceptions import ModelNotFoundError


def _load_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub rejects a path that is neither a folder nor a repo name
    # with HFValidationError (a ValueError) on transformers 4; 5 raises OSError.
    try:
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # older huggingface_hub
        try:
            from huggingface_hub.utils import HFValidationError
        except ImportError:
            return (OSError,)
    return (OSError, HFValidationError)


LOAD_ERRORS = _load_errors()


class TorchModule:
    """``self.torch`` without storing the module (a module cannot be pickled)."""

    @property
    def torch(self):
        import torch

        return torch


def weights_fingerprint(module) -> str:
    """A cheap content hash of a loaded model (first and last parameters)."""
    params = list(module.parameters())
    h = hashlib.sha256()
    for t in (params[0], params[-1]) if params else ():
        h.update(t.detach().float().cpu().numpy().tobytes()[: 1 << 16])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()[:16]


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
