"""Heavy optional dependencies, imported only when a feature needs them."""

from __future__ import annotations

import importlib

_EXTRA_OF = {
    "torch": "embeddings",
    "transformers": "embeddings",
    "sentence_transformers": "embeddings",
    "llm_blender": "pairrm",
    "matplotlib": "plot",
    "pyarrow": "io",
    "dask": "dask",
    "distributed": "dask",
    "vllm": "vllm",
    "psutil": "vllm",
}


def require(module: str, feature: str):
    """Import ``module`` or explain which skdeita extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_OF.get(module.split(".")[0], "all")
        raise ImportError(
            f"{feature} needs the '{module.split('.')[0]}' package. Install it with: "
            f"pip install 'skdeita[{extra}]'"
        ) from exc


def resolve_device(device: str | None) -> str:
    """``None`` means CUDA when available, else CPU."""
    if device is not None:
        return str(device)
    torch = require("torch", "Choosing a device")
    return "cuda" if torch.cuda.is_available() else "cpu"
