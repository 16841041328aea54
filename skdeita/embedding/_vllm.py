"""Causal-LM embeddings on a vLLM engine, equal to ``TransformersEncoder``'s.

DEITA embeds rows with a causal LM (Mistral-7B, the last token's final
hidden state); at that size vLLM's pooling engine is the fast way. Here:

- texts are tokenized and truncated by the model's own tokenizer exactly as
  :class:`~skdeita.embedding._backends.TransformersEncoder` does (special
  tokens added, cut at ``max_length``) and reach vLLM as token ids;
- the engine pools the final hidden states (``last``, ``mean`` or ``cls``)
  with vLLM's activation off: its default output is L2-normalised, and here
  normalising is the caller's choice (``normalize``), done in float32 on the
  returned vectors as ``TransformersEncoder`` does it;
- the caller chooses the batches (:meth:`VLLMEncoder.iter_encode`): each is
  one vLLM call, so progress, caching and checkpoints stay with the caller.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from types import SimpleNamespace

import numpy as np

from ..utils._loading import model_max_length
from ..utils._optional import require
from ..utils._progress import progress_bar
from ..utils._vllm import (
    check_backend_kwargs,
    check_device,
    engine_kwargs,
    load_tokenizer_and_config,
    start_engine,
)

_POOLING = {"last": "LAST", "mean": "MEAN", "cls": "CLS"}
# torch.nn.functional.normalize's floor on the norm (TransformersEncoder uses it).
_NORM_EPS = 1e-12


class VLLMEncoder:
    """Embeds texts with a causal LM on vLLM's pooling engine.

    Parameters mirror ``TransformersEncoder``'s (``device=None`` means where
    the installed vLLM runs; ``model_kwargs`` must be empty); ``pooling`` is
    ``"last"``, ``"mean"`` or ``"cls"``; ``backend_kwargs`` go to
    ``vllm.LLM`` (checked here, before any engine starts). The engine starts
    on the first batch, once, and :meth:`close` ends it.
    """

    def __init__(
        self,
        model,
        *,
        device: str | None = None,
        dtype: str = "float32",
        max_length: int | None = None,
        pooling: str = "last",
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        model_kwargs: dict | None = None,
        backend_kwargs: dict | None = None,
        hint: str = "",
    ):
        if pooling not in _POOLING:
            raise ValueError(f"pooling must be one of {sorted(_POOLING)}, got {pooling!r}.")
        if model_kwargs:
            raise ValueError(
                "model_kwargs are for the transformers backends; with backend='vllm' pass "
                "engine settings in backend_kwargs."
            )
        name = str(model)
        self.backend_kwargs = check_backend_kwargs(backend_kwargs)
        device = check_device(device)
        self.tokenizer, self.config = load_tokenizer_and_config(
            name, trust_remote_code=trust_remote_code, local_files_only=local_files_only, hint=hint
        )
        self.name = name
        self.source = name  # a folder or a hub name, for its content digest
        self.device = device
        self.dtype = dtype
        self.pooling = pooling
        self.trust_remote_code = trust_remote_code
        context = model_max_length(self.tokenizer, SimpleNamespace(config=self.config))
        self.max_length = max_length or context
        self.dim = int(self.config.get_text_config().hidden_size)
        where = os.path.abspath(name) if os.path.isdir(name) else name
        self._where = where
        self._identity = None
        self._engine = None

    @property
    def identity(self) -> str:
        """What a cached embedding depends on: the model's files, dtype, length, pooling."""
        if self._identity is None:
            from ..utils._fingerprint import files_digest

            where = self._where
            content = files_digest(where)[:16] if os.path.isdir(where) else "hub"
            self._identity = (
                f"vllm-embed|{where}|{self.dtype}|{self.max_length}|{self.pooling}|{content}"
            )
        return self._identity

    @property
    def engine(self):
        """The vLLM pooling engine, started on first use."""
        if self._engine is None or self._engine.closed:
            vllm_config = require("vllm.config", "backend='vllm'")
            pooler = vllm_config.PoolerConfig(
                pooling_type=_POOLING[self.pooling], use_activation=False
            )
            kwargs = engine_kwargs(
                self.name,
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
                max_model_len=self.max_length,
                device=self.device,
                backend_kwargs=self.backend_kwargs,
                config=self.config,
                runner="pooling",
                convert="embed",
                pooler_config=pooler,
            )
            self._engine = start_engine(kwargs)
        return self._engine

    def token_ids(self, text: str) -> list[int]:
        """The ids ``TransformersEncoder`` would feed the model for ``text``."""
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    def iter_encode(
        self, texts: list[str], batches: Iterable, *, normalize: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Embed ``texts`` batch by batch, in the caller's batches.

        ``batches`` yields arrays of positions in ``texts``; each is one vLLM
        call. Yields ``(positions, vectors)`` with ``vectors`` a float32
        ``(len(positions), dim)`` array.
        """
        vllm = require("vllm", "backend='vllm'")
        params = vllm.PoolingParams(use_activation=False)
        for batch in batches:
            positions = np.asarray(batch, dtype=np.intp)
            if not len(positions):
                continue
            prompts = [
                vllm.TokensPrompt(prompt_token_ids=self.token_ids(texts[i])) for i in positions
            ]
            outputs = self.engine.run("embed", prompts, pooling_params=params, use_tqdm=False)
            vectors = np.stack([np.asarray(o.outputs.embedding, dtype=np.float32) for o in outputs])
            if normalize:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, _NORM_EPS)
            yield positions, vectors.astype(np.float32, copy=False)

    def encode(self, texts: list[str], *, batch_size: int, normalize: bool, progress) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, ``batch_size`` texts per vLLM call."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Length-sorted batches, as TransformersEncoder's (results are in input order).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        batches = [order[s : s + batch_size] for s in range(0, len(texts), batch_size)]
        with progress_bar(len(texts), "Embedding", progress) as bar:
            for positions, vectors in self.iter_encode(texts, batches, normalize=normalize):
                out[positions] = vectors
                bar.update(len(positions))
        return out

    def close(self) -> None:
        """End the engine (it starts again on the next call)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    shutdown = close

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_engine"] = None  # pickles without the engine
        return state
