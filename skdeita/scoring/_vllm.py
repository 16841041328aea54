"""DEITA's first-token scores on a vLLM engine, equal to the transformers path.

:class:`VLLMCausalLM` has the surface DEITA's scorers use on
:class:`~skdeita.scoring._base.CausalLM` (``tokenizer``, ``encode``,
``context``, ``identity``, ``pad_id``) and a ``first_token_scores`` equal to
``generate(...).scores[0][:, token_ids]`` on the same model:

- tokenization and truncation stay in transformers (the tokenizer is loaded
  exactly as ``CausalLM`` loads it); prompts reach vLLM as token ids, and a
  prompt longer than the engine's limit never reaches it;
- the requested ids are read with ``SamplingParams(logprob_token_ids=...)``,
  which returns them whatever their rank (DEITA's vLLM path read them from a
  top-k list, and scored 3.0 when a digit was missing from it);
- the values are vLLM's processed logits (``logprobs_mode="processed_logits"``):
  after the repetition penalty, and, when the model samples, temperature,
  top-k and top-p, exactly the processors ``generate`` applies;
- a generation-config setting vLLM cannot reproduce is refused by name
  before any engine starts (:func:`check_generation_config`).

``sequence_losses`` gives IFD's losses (Superfiltering) from vLLM's prompt
log-probabilities, equal to :func:`skdeita.scoring._perplexity.sequence_losses`;
it runs on an engine of its own (raw log-probabilities, not processed logits).
"""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import numpy as np

from ..utils._loading import LOAD_ERRORS, model_max_length, not_found
from ..utils._optional import require
from ..utils._vllm import (
    GENERATED_TOKENS,
    check_backend_kwargs,
    check_device,
    engine_kwargs,
    load_tokenizer_and_config,
    start_engine,
)

# Settings of a generation config that make transformers' generate add a
# logits processor vLLM has no exact equivalent for, with the values that
# add none. (min_length / min_new_tokens and exponential_decay_length_penalty
# touch only the end-of-sequence token at the first step, and
# renormalize_logits subtracts one constant per row: none of them changes a
# softmax over other tokens.)
_OFF_ALWAYS: dict[str, tuple] = {
    "num_beams": (1,),
    "penalty_alpha": (0, 0.0),
    "guidance_scale": (1, 1.0),
    "sequence_bias": (),
    "encoder_repetition_penalty": (1, 1.0),
    "no_repeat_ngram_size": (0,),
    "encoder_no_repeat_ngram_size": (0,),
    "bad_words_ids": (),
    "force_words_ids": (),
    "constraints": (),
    "forced_bos_token_id": (),
    "forced_eos_token_id": (),
    "remove_invalid_values": (False,),
    "suppress_tokens": (),
    "begin_suppress_tokens": (),
    "watermarking_config": (),
    "dola_layers": (),
    "prompt_lookup_num_tokens": (),
    "token_healing": (False,),
}
# Warpers applied only when the model samples (do_sample=True).
_OFF_WHEN_SAMPLING: dict[str, tuple] = {
    "min_p": (),
    "typical_p": (1, 1.0),
    "epsilon_cutoff": (0, 0.0),
    "eta_cutoff": (0, 0.0),
    "top_h": (),
}
# The temperatures vLLM samples with as given: it raises a lower one to 0.01
# (with a warning, not an error) and refuses one above 2.
_TEMPERATURES = (1e-2, 2.0)


def _is_off(value, off: tuple) -> bool:
    if value is None or (isinstance(value, (list, tuple, dict)) and not value):
        return True
    return any(value == o for o in off)


def load_generation_config(model: str, *, trust_remote_code: bool, local_files_only: bool):
    """The model's generation config as ``generate`` resolves it.

    From ``generation_config.json``, else from the model config (as
    ``from_pretrained`` does); settings left unset take transformers' global
    defaults (transformers 5 fills them in at ``generate``, e.g. top_k=50).
    """
    tf = require("transformers", "backend='vllm'")
    try:
        config = tf.GenerationConfig.from_pretrained(model, local_files_only=local_files_only)
    except LOAD_ERRORS:
        model_config = tf.AutoConfig.from_pretrained(
            model, trust_remote_code=trust_remote_code, local_files_only=local_files_only
        )
        config = tf.GenerationConfig.from_model_config(model_config)
    defaults = getattr(config, "_get_default_generation_params", None)
    for name, value in (defaults() if defaults else {}).items():
        if getattr(config, name, None) is None:
            setattr(config, name, value)
    return config


def sampling_settings(config) -> dict:
    """``vllm.SamplingParams`` settings that reproduce ``generate``'s first scores.

    ``config`` is a resolved generation config (:func:`load_generation_config`).
    Raises ``ValueError`` naming the first setting vLLM cannot reproduce.
    """

    def get(name, default=None):
        value = getattr(config, name, None)
        return default if value is None else value

    def refuse(name, why="vLLM has no exact equivalent of the logits processor it adds"):
        raise ValueError(
            f"The model's generation config sets {name}={getattr(config, name)!r}: "
            f"backend='vllm' cannot score with it ({why}). Use backend='transformers', "
            "or remove the setting from generation_config.json."
        )

    for name, off in _OFF_ALWAYS.items():
        if not _is_off(getattr(config, name, None), off):
            refuse(name)
    settings: dict = {}
    penalty = float(get("repetition_penalty", 1.0))
    if penalty <= 0:
        refuse("repetition_penalty", "it must be positive")
    if penalty != 1.0:
        settings["repetition_penalty"] = penalty
    if not get("do_sample", False):
        settings["temperature"] = 0.0  # greedy: generate applies no warper
        return settings
    for name, off in _OFF_WHEN_SAMPLING.items():
        if not _is_off(getattr(config, name, None), off):
            refuse(name)
    temperature = float(get("temperature", 1.0))
    low, high = _TEMPERATURES
    if not low <= temperature <= high:
        refuse("temperature", f"vLLM samples only with temperatures from {low} to {high}")
    settings["temperature"] = temperature
    settings["top_k"] = max(int(get("top_k", 0)), 0)
    top_p = float(get("top_p", 1.0))
    if not 0.0 < top_p <= 1.0:
        refuse("top_p", "it must be in (0, 1]")
    settings["top_p"] = top_p
    return settings


def check_generation_config(
    model, *, trust_remote_code: bool = False, local_files_only: bool = False
) -> dict:
    """Check that vLLM can score ``model`` exactly; starts nothing.

    Returns the ``vllm.SamplingParams`` settings (see :func:`sampling_settings`);
    raises ``ValueError`` naming a generation setting vLLM cannot reproduce.
    """
    config = load_generation_config(
        str(model), trust_remote_code=trust_remote_code, local_files_only=local_files_only
    )
    return sampling_settings(config)


class VLLMCausalLM:
    """A causal LM served by vLLM, with ``CausalLM``'s scoring surface.

    The tokenizer, the generation settings and ``backend_kwargs`` are loaded
    and checked here; the engine starts on the first call of
    :meth:`first_token_scores` (so that a fully cached run starts none),
    once, and :meth:`close` ends it.

    Parameters
    ----------
    model : str or path-like
        A local model directory or a hub name, as for ``CausalLM``.
    device : str or None, default=None
        ``"cpu"`` or ``"cuda"``; None means where the installed vLLM runs. It
        must match the installed build (``ValueError`` otherwise).
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Passed to vLLM explicitly (its "auto" runs float32 weights in
        bfloat16 on CPU).
    trust_remote_code, local_files_only : bool, default=False
        As for ``CausalLM``.
    max_length : int or None, default=None
        The longest prompt the engine takes (default: the model's context,
        ``CausalLM.context``); callers truncate to it before scoring.
    backend_kwargs : dict or None, default=None
        More ``vllm.LLM`` arguments (checked by
        :func:`~skdeita.utils._vllm.check_backend_kwargs`).
    hint : str, default=""
        Appended to the "model not found" error.
    """

    def __init__(
        self,
        model,
        *,
        device: str | None = None,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        max_length: int | None = None,
        backend_kwargs: dict | None = None,
        hint: str = "",
    ):
        name = str(model)
        self.backend_kwargs = check_backend_kwargs(backend_kwargs)
        device = check_device(device)
        self.tokenizer, self.config = load_tokenizer_and_config(
            name, trust_remote_code=trust_remote_code, local_files_only=local_files_only, hint=hint
        )
        try:
            generation = load_generation_config(
                name, trust_remote_code=trust_remote_code, local_files_only=local_files_only
            )
        except LOAD_ERRORS as exc:
            raise not_found(name, exc, hint) from exc
        self.sampling = sampling_settings(generation)
        self.name = name
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.context = model_max_length(self.tokenizer, SimpleNamespace(config=self.config))
        self.max_length = min(max_length or self.context, self.context)
        tok = self.tokenizer
        self.pad_id = next(
            (i for i in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) if i is not None), 0
        )
        self.vocab_size = int(self.config.get_text_config().vocab_size)
        where = os.path.abspath(name) if os.path.isdir(name) else name
        generation_json = generation.to_json_string(use_diff=False)
        self._identity_parts = (where, dtype, hashlib.sha256(generation_json.encode()).hexdigest())
        self._identity = None
        self._engines: dict = {}

    @property
    def identity(self) -> str:
        """What a cached score depends on: the model's files, dtype and generation config."""
        if self._identity is None:
            from ..utils._fingerprint import files_digest

            where, dtype, generation = self._identity_parts
            content = files_digest(where)[:16] if os.path.isdir(where) else "hub"
            self._identity = f"vllm-causal-lm|{where}|{dtype}|{content}|{generation[:16]}"
        return self._identity

    def encode(self, text: str, special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special_tokens)

    @property
    def engine(self):
        """The engine of :meth:`first_token_scores`, started on first use."""
        return self._engine_for("processed_logits")

    def _engine_for(self, logprobs_mode: str):
        # First-token scores read processed logits; losses read the raw
        # model's log-probabilities. The mode is an engine setting: one
        # engine per mode used (a scorer uses one of them).
        engine = self._engines.get(logprobs_mode)
        if engine is None or engine.closed:
            kwargs = engine_kwargs(
                self.name,
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
                max_model_len=self.max_length + GENERATED_TOKENS,
                device=self.device,
                backend_kwargs=self.backend_kwargs,
                config=self.config,
                runner="generate",
                logprobs_mode=logprobs_mode,
            )
            engine = self._engines[logprobs_mode] = start_engine(
                kwargs, allow_long_context=self.max_length + GENERATED_TOKENS > self._positions()
            )
        return engine

    def _positions(self) -> int:
        text = self.config.get_text_config()
        return int(getattr(text, "max_position_embeddings", None) or self.context)

    def first_token_scores(self, sequences: list[list[int]], token_ids: list[int]) -> np.ndarray:
        """``(n, len(token_ids))`` float64: generate's first scores at ``token_ids``.

        Equal to ``generate(...).scores[0][:, token_ids]`` with the model's
        generation config (masked tokens are ``-inf`` in both).
        """
        vllm = require("vllm", "backend='vllm'")
        token_ids = [int(t) for t in token_ids]
        if not 1 <= len(token_ids) <= 128:
            raise ValueError(f"token_ids must hold 1 to 128 ids, got {len(token_ids)}.")
        bad = [t for t in token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token_ids {bad} are outside the vocabulary ({self.vocab_size}).")
        for seq in sequences:
            if not seq:
                raise ValueError("an empty prompt has no next token to score")
            if len(seq) > self.max_length:
                raise ValueError(
                    f"a prompt of {len(seq)} tokens is longer than the vLLM engine's limit of "
                    f"{self.max_length} tokens: truncate it before scoring"
                )
        settings = dict(self.sampling)
        if settings.get("top_k", 0) >= self.vocab_size:
            settings["top_k"] = 0  # transformers clamps to the vocabulary: no filter
        params = vllm.SamplingParams(
            max_tokens=1, logprob_token_ids=token_ids, detokenize=False, **settings
        )
        prompts = [vllm.TokensPrompt(prompt_token_ids=[int(t) for t in s]) for s in sequences]
        outputs = self.engine.run("generate", prompts, params, use_tqdm=False)
        out = np.empty((len(sequences), len(token_ids)), dtype=np.float64)
        for k, result in enumerate(outputs):
            found = result.outputs[0].logprobs
            if not found:
                raise RuntimeError("vLLM returned no scores for a prompt")
            out[k] = [found[0][t].logprob for t in token_ids]
        return out

    def sequence_losses(self, sequences: list[list[int]], starts: list[int]) -> np.ndarray:
        """Mean cross-entropy of each sequence's tokens from ``starts[k]`` on.

        What :func:`skdeita.scoring._perplexity.sequence_losses` computes with
        transformers (IFD's losses), from vLLM's prompt log-probabilities:
        token ``t`` predicted from the positions before it, the raw model's
        log-softmax (no generation setting applies), float64.
        """
        vllm = require("vllm", "backend='vllm'")
        for seq, start in zip(sequences, starts, strict=True):
            if not 1 <= start < len(seq):
                raise ValueError(
                    f"start {start} leaves no token to score in a sequence of {len(seq)}"
                )
            if len(seq) > self.max_length:
                raise ValueError(
                    f"a sequence of {len(seq)} tokens is longer than the vLLM engine's limit of "
                    f"{self.max_length} tokens: truncate it before scoring"
                )
        # prompt_logprobs=0: each prompt token's own log-probability, no top-k.
        params = vllm.SamplingParams(
            max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False
        )
        prompts = [vllm.TokensPrompt(prompt_token_ids=[int(t) for t in s]) for s in sequences]
        engine = self._engine_for("raw_logprobs")
        outputs = engine.run("generate", prompts, params, use_tqdm=False)
        losses = np.empty(len(sequences), dtype=np.float64)
        for k, (seq, start, result) in enumerate(zip(sequences, starts, outputs, strict=True)):
            found = result.prompt_logprobs
            if not found or len(found) != len(seq):
                raise RuntimeError("vLLM returned no prompt log-probabilities for a sequence")
            scored = [found[j][seq[j]].logprob for j in range(start, len(seq))]
            losses[k] = -np.mean(np.asarray(scored, dtype=np.float64))
        return losses

    def close(self) -> None:
        """End its engines (they start again on the next call)."""
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.close()

    shutdown = close

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_engines"] = {}  # pickles without its engines
        return state
