"""Loading Hugging Face models from a hub name or a local directory.

Shared by every model-backed estimator: the pre-flight check that finds a
model without loading it (a local folder and the files it must hold, a hub
name and, offline, the local cache), its estimated memory (read from the
weight files' headers, never from the weights), the error that says how to
get a model, the dtype names and per-device default, and a model's context
length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import struct
from pathlib import Path

from ..exceptions import ModelNotFoundError

logger = logging.getLogger("skdeita")


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


# -- what a model folder holds -------------------------------------------------------

_CONFIG = ("config.json",)
# Any one of these makes a tokenizer (tokenizer_config.json alone covers the
# byte-level tokenizers that have no vocabulary file).
_TOKENIZER = (
    "tokenizer.json",
    "tokenizer.model",
    "spm.model",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "tokenizer_config.json",
)
_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# What each kind of model must hold; every kind skdeita loads needs all three
# (a PairRM ranker directory is checked by the pairrm family itself).
_PARTS = {"config": _CONFIG, "tokenizer": _TOKENIZER, "weights": _WEIGHTS}
MODEL_KINDS = ("causal-lm", "transformers", "sentence-transformers", "backbone")


def _describe(part: str, names: tuple[str, ...]) -> str:
    if part == "config":
        return names[0]
    if part == "weights":
        return "model.safetensors or pytorch_model.bin (or a sharded .index.json)"
    return "a tokenizer (" + ", ".join(names[:-1]) + " or " + names[-1] + ")"


def missing_model_files(folder: str | os.PathLike) -> list[str]:
    """What a model folder lacks of a config, a tokenizer and weights (empty: nothing)."""
    p = Path(folder)
    return [
        _describe(part, names)
        for part, names in _PARTS.items()
        if not any((p / name).exists() for name in names)
    ]


def check_local_model_dir(path: str, backend: str = "transformers", what: str = "Model") -> None:
    """A local model directory must hold a config, a tokenizer and weights; say
    which is missing. Anything that is not a directory is left to the caller.
    Every ``backend`` needs the same three."""
    if not Path(path).is_dir():
        return
    missing = missing_model_files(path)
    if missing:
        raise ModelNotFoundError(f"{what} directory {path} is missing {', '.join(missing)}.")


# -- a local path or a hub name? -------------------------------------------------------

_TRUE = {"1", "on", "yes", "true"}


def offline_reason(local_files_only: bool = False) -> str | None:
    """Why no hub will be reached (``HF_HUB_OFFLINE=1``, ...), or None."""
    if local_files_only:
        return "local_files_only=True"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


def looks_like_path(text: str) -> bool:
    """A name meant as a folder, not a hub id: it starts with ``/ . ~`` or a
    drive, has a backslash or two slashes, names an existing file, or its
    first part is an existing folder (``models/scorer`` next to ``models/``)."""
    if text.startswith(("/", ".", "~")) or "\\" in text or re.match(r"[A-Za-z]:", text):
        return True
    parts = text.split("/")
    return len(parts) > 2 or Path(text).exists() or (len(parts) == 2 and Path(parts[0]).is_dir())


def _hub_name_error(name: str) -> str | None:
    """huggingface_hub's own objection to ``name`` as a repo id, or None."""
    try:
        from huggingface_hub.utils import validate_repo_id
    except ImportError:  # the loader will name the missing extra
        return None
    try:
        validate_repo_id(name)
    except ValueError as exc:  # HFValidationError
        return str(exc).split("\n")[0]
    return None


def hub_cache_dir() -> str:
    """The local Hugging Face cache (``HF_HUB_CACHE``), as huggingface_hub reads it."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.path.expanduser("~/.cache/huggingface/hub")
    return str(constants.HF_HUB_CACHE)


def cached_model_folder(name: str, cache_dir=None) -> Path | None:
    """The local Hugging Face cache's snapshot of hub model ``name`` (one that
    holds its config.json), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir or hub_cache_dir())
    return Path(found).parent if isinstance(found, str) else None


def download_hint(name: str, where: str = "DIR") -> str:
    """Today's command that downloads hub model ``name`` (huggingface_hub's ``hf``)."""
    return f"`hf download {name} --local-dir {where}`"


def check_model(
    model,
    kind: str = "transformers",
    *,
    local_files_only: bool = False,
    owner: str = "",
    param: str = "model",
    hub_names: tuple[str, ...] = (),
    hint: str = "",
    cache_dir=None,
) -> Path | None:
    """Find a model without loading it, or raise saying what is wrong.

    - A local folder must hold a config, a tokenizer and weights; the error
      names the missing files.
    - A string meant as a path (see :func:`looks_like_path`) that is not a
      folder is "no such model directory": it is never looked up on a hub.
    - Anything else must be a well-formed hub name (``owner/name``, or a short
      name the hub accepts) and, when no hub is reached (``HF_HUB_OFFLINE=1``,
      ``TRANSFORMERS_OFFLINE=1``, ``local_files_only``), be in the local
      Hugging Face cache with its config, tokenizer and weights.

    Parameters
    ----------
    model : str or path-like
        What the estimator's parameter holds.
    kind : {"causal-lm", "transformers", "sentence-transformers", "backbone"}
        What is loaded (all need a config, a tokenizer and weights).
    local_files_only : bool, default=False
        The estimator's parameter: never reach a hub.
    owner, param : str
        Who holds the parameter and its name, for the messages.
    hub_names : tuple of str
        Other hub names the loader tries for ``model`` (sentence-transformers
        prefixes a short name with ``sentence-transformers/``).
    hint : str
        Appended to the "not in the cache" message.
    cache_dir : str or None
        The cache the loader reads (None: ``HF_HUB_CACHE``).

    Returns
    -------
    folder : Path or None
        The folder holding the model's files (the local folder, or the
        cache's snapshot); None for a hub name not downloaded yet while the
        hub is reachable.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    text = os.fspath(model)
    who = f"{owner} {param}" if owner else param
    path = Path(text).expanduser()
    if path.is_dir():
        what = who if owner else ("Backbone" if kind == "backbone" else "Model")
        check_local_model_dir(str(path), kind, what=what)
        return path
    if looks_like_path(text):
        if path.exists():
            raise ModelNotFoundError(
                f"{who}={text!r} is a file, not a model directory; pass the folder that "
                "holds config.json, the tokenizer and the weights."
            )
        raise ModelNotFoundError(
            f"{who}={text!r}: no such model directory ({path.absolute()} does not exist); "
            "pass an existing folder, or a Hugging Face hub name such as 'owner/name'."
        )
    problem = _hub_name_error(text)
    if problem is not None:
        raise ValueError(
            f"{who}={text!r} is neither an existing model directory nor a Hugging Face hub "
            f"name ('owner/name'): {problem}"
        )
    reason = offline_reason(local_files_only)
    for name in (text, *hub_names):
        folder = cached_model_folder(name, cache_dir)
        if folder is None:
            continue
        missing = missing_model_files(folder)
        if missing and reason is not None:
            raise ModelNotFoundError(
                f"{who}={text!r}: the local Hugging Face cache ({folder}) lacks "
                f"{', '.join(missing)}, and no hub is reached ({reason}). Download it whole "
                f"with {download_hint(name)} and pass DIR.{hint}"
            )
        return folder
    if reason is None:
        return None  # the loader downloads it
    raise ModelNotFoundError(
        f"{who}={text!r} is not in the local Hugging Face cache ({cache_dir or hub_cache_dir()}) "
        "and no "
        f"hub is reached ({reason}): pass a local directory, or download it once with "
        f"{download_hint(text)} and pass DIR.{hint}"
    )


def not_found(model: str, exc: Exception, hint: str = "") -> ModelNotFoundError:
    """The error for a model that cannot be loaded, saying how to get it."""
    return ModelNotFoundError(
        f"Could not load model {model!r}: {exc}. No model hub is reached when "
        "HF_HUB_OFFLINE=1 or without network: pass a local directory, or download "
        f"it once with {download_hint(model)}.{hint}"
    )


# -- dtypes and memory -----------------------------------------------------------------

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_CONFIG_DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def default_dtype(device: str | None) -> str:
    """``"bfloat16"`` on CUDA, ``"float32"`` elsewhere (``None``: CUDA when available).

    bfloat16 halves a model's memory (a 13B scorer: about 26 GB instead of
    52 GB) and keeps float32's exponent range, so logits do not overflow as
    they can in float16. CPUs and MPS run float32: most CPUs have no fast
    bfloat16 arithmetic, and float32 is what DEITA's scripts load.
    """
    if device is None:
        try:
            import torch
        except ImportError:
            return "float32"
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bfloat16" if str(device).startswith("cuda") else "float32"


def _safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in a safetensors file, from its header alone."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100_000_000:  # a header is kilobytes: not a safetensors file
            raise ValueError(f"{path} has no safetensors header")
        header = json.loads(f.read(size))
    # Floating-point tensors only: integer buffers (position ids) are not cast
    # to the dtype and weigh nothing next to the weights.
    return sum(
        math.prod(t["shape"])
        for k, t in header.items()
        if k != "__metadata__" and t["dtype"].startswith(("F", "BF"))
    )


def _stored_bytes(folder: Path) -> int | None:
    """Bytes per parameter of the stored weights, from the config's dtype."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _CONFIG_DTYPES.get(str(config.get("dtype") or config.get("torch_dtype")))


def _config_parameters(folder: Path) -> int | None:
    """A transformer's parameters estimated from its config (weights not here):
    embeddings, attention (with grouped key/value heads) and the MLP; biases
    and norms left out (within a few percent for real models)."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    h = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    vocab = cfg.get("vocab_size")
    if not (isinstance(h, int) and isinstance(layers, int) and isinstance(vocab, int)):
        return None
    inner = cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * h
    heads = cfg.get("num_attention_heads") or cfg.get("n_head") or 1
    kv = h * (cfg.get("num_key_value_heads") or heads) // heads
    gated = str(cfg.get("hidden_act", "")) in {"silu", "swiglu", "swish"}  # gate, up, down
    per_layer = 2 * h * h + 2 * h * kv + (3 if gated else 2) * h * inner
    tied = cfg.get("tie_word_embeddings", True)
    # A position table, unless positions are rotary (rope_theta, rope_scaling, ...).
    positions = cfg.get("n_positions") or cfg.get("max_position_embeddings") or 0
    if any(k.startswith("rope") for k in cfg):
        positions = 0
    return (vocab * (1 if tied else 2) + positions) * h + layers * per_layer


def count_parameters(folder: str | os.PathLike) -> int | None:
    """Parameters of the model in ``folder``, without loading the weights.

    Read from the safetensors headers (one file, or every shard of an index);
    else from the stored size and the config's dtype (``pytorch_model.bin``,
    an index whose shards are not all here); else estimated from the config.
    None when nothing tells.
    """
    folder = Path(folder)
    single = folder / "model.safetensors"
    if single.is_file():
        return _safetensors_parameters(single)
    stored = _stored_bytes(folder)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = folder / index_name
        if not index_path.is_file():
            continue
        index = json.loads(index_path.read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()))
        if index_name.startswith("model.") and all((folder / s).is_file() for s in shards):
            return sum(_safetensors_parameters(folder / s) for s in shards)
        total = index.get("metadata", {}).get("total_size")
        if isinstance(total, int) and stored:
            return total // stored
    if (folder / "pytorch_model.bin").is_file() and stored:
        return (folder / "pytorch_model.bin").stat().st_size // stored
    return _config_parameters(folder)


def model_folder(model) -> Path | None:
    """Where a model's files are here: its folder, or the cache's snapshot of a hub name."""
    path = Path(os.fspath(model)).expanduser()
    if path.is_dir():
        return path
    return None if looks_like_path(os.fspath(model)) else cached_model_folder(os.fspath(model))


def estimate_model_bytes(model, dtype) -> int | None:
    """Memory a model's weights take in ``dtype``, without loading them.

    Parameters
    ----------
    model : str or path-like
        A model directory, or a hub name in the local Hugging Face cache.
    dtype : {"float32", "float16", "bfloat16"} or torch.dtype
        The dtype the weights will be loaded in.

    Returns
    -------
    n_bytes : int or None
        Parameters x bytes per parameter (activations and the framework's
        own memory come on top); None when the model's files are not here
        (a hub name not downloaded yet).

    Examples
    --------
    >>> from skdeita.utils._loading import estimate_model_bytes
    >>> estimate_model_bytes("/nowhere", "bfloat16") is None
    True
    """
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    folder = model_folder(model)
    n = None if folder is None else count_parameters(folder)
    return None if n is None else n * DTYPE_BYTES[name]


def format_bytes(n: int) -> str:
    """``26.0 GB``, ``91 MB``, ``136 kB``: decimal units, as model sizes are quoted."""
    for unit, scale, digits in (("GB", 1e9, 1), ("MB", 1e6, 0)):
        if n >= scale:
            return f"{n / scale:.{digits}f} {unit}"
    return f"{n / 1e3:.0f} kB"


def log_model_memory(owner: str, model, dtype: str, device: str) -> int | None:
    """Log (logger ``"skdeita"``, INFO) a model's estimated memory before it loads."""
    n = estimate_model_bytes(model, dtype)
    size = f"~{format_bytes(n)}" if n is not None else "size unknown (not downloaded yet)"
    logger.info("%s: loading %s on %s in %s: %s", owner, os.fspath(model), device, dtype, size)
    return n


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
