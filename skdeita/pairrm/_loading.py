"""Loading an llm-blender pairwise ranker, decided by its files, never by its path's name.

llm-blender 0.0.2's ``Blender.loadranker`` (``blender/blender.py``,
``blender/blender_utils.py``, ``pair_ranker/model_util.py``) changes what it
loads with substrings of the model and backbone paths:

1. ``"alpaca" in name or "llama" in name`` (case-sensitive, the backbone
   path): the tokenizer pads on the left (``padding_side="left"``);
2. ``"starling-rm" in name.lower()``: the tokenizer of
   ``meta-llama/Llama-2-7b-chat-hf`` is downloaded from the hub instead of the
   backbone's, padded with ``unk`` and truncated on the left;
3. ``"phi" in name`` (also ``/home/phil``, ``dolphin``, ``graphics``):
   ``AutoTokenizer.from_pretrained(..., trust_remote_code=True)`` and an
   added ``<|sepoftext|>`` separator, which grows the vocabulary so that the
   saved weights no longer fit;
4. a config without a known ``ranker_type``: the ranker type is guessed from
   the end of ``model_name`` (``OpenAssistant/reward-model-deberta-v3-large-v2``,
   ``berkeley-nest/Starling-RM-7B-alpha``, ``openbmb/UltraRM-13b``);
5. a checkpoint path whose last part is ``pytorch_model.bin`` is read as its
   folder.

Here the same building blocks (llm-blender's ``RankerConfig``,
``build_collator``, ``build_pretrained_model`` and ``CrossCompareReranker``)
are put together from what the files say: the tokenizer is the backbone's
own, with its own padding and truncation sides; the model class follows the
config's ``model_type``; the ``<|sepoftext|>`` separator is added only to a
ranker whose ``model_type`` is ``phi`` (as llm-blender trains those); the
ranker type is the config's ``ranker_type`` and must be ``pairranker``.
``trust_remote_code`` is ``False`` unless the caller passes ``True``, for
every model type.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..exceptions import ModelNotFoundError
from ..utils._loading import check_model, download_hint, looks_like_path, offline_reason
from ..utils._optional import require
from ._blender_compat import import_llm_blender

DEFAULT_PAIRRM = "llm-blender/PairRM"

# The separator llm-blender adds to phi tokenizers (model_util.build_tokenizer).
PHI_SEP_TOKEN = "<|sepoftext|>"
# Model types that load something other than the configured backbone.
_UNSUPPORTED_MODEL_TYPES = ("starling-rm", "ultra-rm", "deberta-rm", "other")


@dataclass
class LoadedRanker:
    """What ``load_ranker`` returns: llm-blender's objects and the settings used."""

    ranker: object  # llm_blender.pair_ranker.ranker.CrossCompareReranker
    tokenizer: object
    collator: object  # llm_blender.pair_ranker.collator.CrossCompareCollator
    config: object  # llm_blender.pair_ranker.config.RankerConfig
    path: str  # the ranker directory
    backbone: str  # the backbone name or directory used
    device: str
    dtype: str  # "float32", "float16" or "bfloat16"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _hub_cache() -> Path:
    """llm-blender's download folder for hub rankers (``TRANSFORMERS_CACHE``)."""
    import_llm_blender()  # defines TRANSFORMERS_CACHE on transformers 5
    from transformers.utils.hub import TRANSFORMERS_CACHE

    return Path(TRANSFORMERS_CACHE)


def _check_ranker_dir(path: Path) -> None:
    """Name what a local ranker directory lacks."""
    missing = [name for name in ("config.json",) if not (path / name).exists()]
    if not any((path / w).exists() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors or pytorch_model.bin")
    if missing:
        raise ModelNotFoundError(f"Ranker directory {path} is missing {', '.join(missing)}.")


def _check_backbone_dir(path: Path) -> None:
    need = [] if (path / "config.json").exists() else ["config.json"]
    tokenizer_files = ("tokenizer.json", "spm.model", "tokenizer_config.json", "vocab.txt")
    if not any((path / t).exists() for t in tokenizer_files):
        need.append("tokenizer.json or spm.model")
    if need:
        raise ModelNotFoundError(f"Backbone directory {path} is missing {', '.join(need)}.")


def resolve_ranker_dir(model: str) -> Path:
    """The local directory of ``model``: itself, llm-blender's cache, or a download."""
    path = Path(model)
    if path.is_dir():
        _check_ranker_dir(path)
        return path
    cache = _hub_cache()
    cached = cache / model
    if cached.is_dir():
        _check_ranker_dir(cached)
        return cached
    if _offline():
        raise _offline_error(model)
    try:  # where llm-blender's loadranker downloads it
        from huggingface_hub import snapshot_download

        snapshot_download(model, local_dir=cached)
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not found"
        raise ModelNotFoundError(f"Could not download PairRM {model!r}: {exc}") from exc
    _check_ranker_dir(cached)
    return cached


def _offline_error(model: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"PairRM weights {model!r} are not available offline. Download them once "
        f"({download_hint(model)}, and the backbone microsoft/deberta-v3-large into "
        "DIR/backbone), then pass model=DIR."
    )


def check_ranker(model, backbone=None, *, owner: str = "PairRMRanker") -> Path | None:
    """Find a ranker and its backbone without loading (or downloading) either.

    Returns the ranker's folder (local, or llm-blender's download folder),
    or None for a hub name not downloaded yet while the hub is reachable.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    folder = None
    if path.is_dir():
        _check_ranker_dir(path)
        folder = path
    elif looks_like_path(text):
        raise ModelNotFoundError(
            f"{owner} model={text!r}: no such ranker directory ({path.absolute()} does not "
            "exist); pass an existing folder or a hub name such as 'llm-blender/PairRM'."
        )
    else:
        cache = _hub_cache()
        if (cache / text).is_dir():
            folder = cache / text
            _check_ranker_dir(folder)
        elif offline_reason() is not None:
            raise _offline_error(text)
    hint = " Or pass backbone=DIR."
    if folder is not None:
        hint = f" Or copy it into {folder / 'backbone'}, or pass backbone=DIR."
    if backbone is None and folder is not None:
        if (folder / "backbone").is_dir():
            backbone = folder / "backbone"
        else:  # as resolve_backbone: the config's model_name, else the ranker folder
            try:
                config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"Cannot read {folder / 'config.json'}: {exc}") from exc
            backbone = config.get("model_name") or str(folder)
    if backbone is not None:
        check_model(
            backbone,
            "backbone",
            owner=owner,
            param="backbone",
            hint=hint,
            cache_dir=str(_hub_cache()),
        )
    return folder


def ranker_folder(model) -> Path | None:
    """The ranker's folder here (local, or llm-blender's download folder), or None."""
    path = Path(os.fspath(model)).expanduser()
    if path.is_dir():
        return path
    cached = _hub_cache() / os.fspath(model)
    return cached if cached.is_dir() else None


def ranker_dtype(folder: Path | None, device: str, *, dtype, fp16) -> str:
    """The dtype :func:`load_ranker` will use, read from the ranker's config alone."""
    config_fp16 = None
    if folder is not None and dtype is None and fp16 is None:
        try:
            config_fp16 = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(
                "fp16"
            )
        except (OSError, ValueError):
            pass
    return resolve_dtype(device, SimpleNamespace(fp16=config_fp16), dtype=dtype, fp16=fp16)


def read_ranker_config(path: Path):
    """llm-blender's ``RankerConfig`` from ``<path>/config.json``, checked."""
    import_llm_blender()
    from llm_blender.pair_ranker.config import RankerConfig

    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"Cannot read {path / 'config.json'}: {exc}") from exc
    with warnings.catch_warnings():
        # dataclasses_json warns about the fields a config leaves None.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")
        config = RankerConfig.from_dict(raw)
    if config.ranker_type != "pairranker":
        raise ValueError(
            f"{path / 'config.json'} has ranker_type={config.ranker_type!r}; PairRMRanker "
            "runs llm-blender pairwise rankers (ranker_type 'pairranker', as llm-blender/PairRM)."
        )
    if not config.model_type:
        raise ValueError(f"{path / 'config.json'} has no model_type (e.g. 'deberta').")
    if str(config.model_type).startswith(_UNSUPPORTED_MODEL_TYPES):
        raise ValueError(
            f"model_type {config.model_type!r} in {path / 'config.json'} is not a pairwise "
            "ranker backbone."
        )
    return config


def resolve_backbone(path: Path, config, backbone: str | None) -> str:
    """``backbone`` if given, else ``<path>/backbone`` when present, else the config's."""
    if backbone is None and (path / "backbone").is_dir():
        backbone = str(path / "backbone")  # an offline copy of the backbone
    if backbone is None:
        # loadranker: a config without model_name uses the ranker path itself.
        backbone = config.model_name or str(path)
    if Path(backbone).is_dir():
        _check_backbone_dir(Path(backbone))
    return str(backbone)


def resolve_dtype(device: str, config, *, dtype: str | None, fp16: bool | None) -> str:
    """``dtype`` if given; else ``fp16``; else llm-blender's rule (the config's
    ``fp16`` on CUDA or MPS, float32 elsewhere)."""
    if dtype is not None:
        return dtype
    on_accelerator = str(device).startswith(("cuda", "mps"))
    half = bool(config.fp16) and on_accelerator if fp16 is None else fp16
    return "float16" if half else "float32"


def _build_tokenizer(config, backbone: str, cache_dir, trust_remote_code: bool):
    """llm-blender's ``build_tokenizer`` without its name tests."""
    transformers = require("transformers", "PairRMRanker")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        backbone, cache_dir=cache_dir, trust_remote_code=trust_remote_code
    )
    if str(config.model_type).startswith("phi"):
        # llm-blender adds this separator to every phi ranker it trains.
        tokenizer.add_special_tokens({"sep_token": PHI_SEP_TOKEN})
        tokenizer.sep_token = PHI_SEP_TOKEN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.pad_token_id = tokenizer.eos_token_id
    return tokenizer


def _build_backbone(config, backbone: str, cache_dir, trust_remote_code: bool):
    """llm-blender's ``build_pretrained_model``, with ``trust_remote_code`` the caller's."""
    transformers = require("transformers", "PairRMRanker")
    from llm_blender.pair_ranker.model_util import build_pretrained_model

    model_type = str(config.model_type)
    if not model_type.startswith("phi"):
        kwargs = {"cache_dir": cache_dir}
        if trust_remote_code:
            kwargs["trust_remote_code"] = True
        return build_pretrained_model(model_type, backbone, **kwargs)
    # llm-blender forces trust_remote_code=True for phi; here the caller decides.
    kwargs = {"cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    if transformers.utils.is_flash_attn_2_available():
        kwargs["attn_implementation"] = "flash_attention_2"
    model = transformers.AutoModelForCausalLM.from_pretrained(backbone, **kwargs)
    model.config.out_hidden_state_size = model.config.hidden_size
    return model


def _load_weights(ranker, path: Path) -> None:
    """llm-blender's checkpoint loading (``blender_utils.load_ranker``)."""
    torch = require("torch", "PairRMRanker")
    if (path / "pytorch_model.bin").exists():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu")
        result = ranker.load_state_dict(state, strict=False)
        if result.missing_keys:
            logging.getLogger(__name__).warning("Missing keys: %s", result.missing_keys)
        return
    from safetensors.torch import load_model

    try:
        load_model(ranker, str(path / "model.safetensors"))
    except RuntimeError as exc:
        raise ModelNotFoundError(
            f"The weights in {path / 'model.safetensors'} do not fit the ranker built from "
            f"its config and backbone: {exc}"
        ) from exc


@contextlib.contextmanager
def quiet():
    """No prints, hub warnings or transformers info on our users' screens."""
    tf_logging = require("transformers.utils.logging", "PairRMRanker")
    logger = logging.getLogger()
    level = logger.level
    tf_level = tf_logging.get_verbosity()
    bars = tf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    tf_logging.set_verbosity_error()
    if bars:
        tf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")
            yield
    finally:
        logger.setLevel(level)
        tf_logging.set_verbosity(tf_level)
        if bars:
            tf_logging.enable_progress_bar()


def load_ranker(
    model: str,
    *,
    backbone: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    fp16: bool | None = None,
    trust_remote_code: bool = False,
) -> LoadedRanker:
    """Load a pairwise ranker as llm-blender does, decided by its files alone.

    Parameters
    ----------
    model : str
        Ranker directory or hub name (``config.json``, ``model.safetensors``).
    backbone : str or None
        Backbone name or directory; None: ``<model>/backbone`` if present,
        else the config's ``model_name``.
    device : str
        Torch device.
    dtype, fp16 : see :func:`resolve_dtype`.
    trust_remote_code : bool
        Passed to every ``from_pretrained`` call (False: no remote code runs).
    """
    torch = require("torch", "PairRMRanker")
    import_llm_blender()
    from llm_blender.pair_ranker.model_util import build_collator
    from llm_blender.pair_ranker.ranker import CrossCompareReranker

    path = resolve_ranker_dir(str(model))
    config = read_ranker_config(path)
    backbone = resolve_backbone(path, config, backbone)
    cache_dir = str(_hub_cache())
    # As loadranker: the config records where it was loaded from.
    config.load_checkpoint, config.cache_dir, config.model_name = str(path), cache_dir, backbone
    config.device = device
    try:
        with quiet():
            tokenizer = _build_tokenizer(config, backbone, cache_dir, trust_remote_code)
            # The collator adds the <|source|>/<|candidate|> tokens to the tokenizer;
            # limits are set again for every call.
            collator = build_collator(
                config.ranker_type,
                tokenizer,
                config.source_maxlength or 0,
                config.candidate_maxlength or 0,
            )
            pretrained = _build_backbone(config, backbone, cache_dir, trust_remote_code)
            # The new rows are overwritten by the checkpoint: no random fill needed.
            pretrained.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            ranker = CrossCompareReranker(pretrained, config, tokenizer).eval()
            _load_weights(ranker, path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ModelNotFoundError):
            raise
        hint = (
            ""
            if Path(backbone).is_dir()
            else f" The backbone {backbone!r} is not a local directory: without a hub, copy "
            f"it into {path / 'backbone'} or pass backbone=DIR."
        )
        raise ModelNotFoundError(
            f"Could not load PairRM from {str(model)!r}: {exc}.{hint}"
        ) from exc
    dtype = resolve_dtype(device, config, dtype=dtype, fp16=fp16)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    ranker = ranker.to(device=device, dtype=torch_dtype[dtype]).eval()
    return LoadedRanker(ranker, tokenizer, collator, config, str(path), backbone, device, dtype)
