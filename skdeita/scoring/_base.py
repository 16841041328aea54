"""What every language-model scorer shares.

A scorer reads one or two text fields per row (an instruction, a response),
or a conversation per row, turns them into *units* (one prompt each: a row,
or one turn of a conversation), scores every unit with a causal LM in
length-sorted batches, and writes one float per row (a list of per-turn
floats for a conversation). The pieces here:

- :class:`CausalLM`: a tokenizer and a causal LM loaded from a hub name or a
  local directory, in the dtype asked for (float32 by default, as DEITA
  and Superfiltering load them);
- :class:`BaseLMScorer`: the estimator shell: input checks before any model
  loads, conversations, the on-disk score cache, and the failure policy.
  A failed unit never becomes a made-up value: ``on_error="raise"`` names
  the row, ``on_error="nan"`` writes NaN and warns once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..base import BaseModelTransformer, Units
from ..exceptions import ScoringError, ScoringFailedWarning, TruncationWarning
from ..utils._conversations import check_messages_column
from ..utils._fingerprint import model_digest
from ..utils._loading import (
    LOAD_ERRORS,
    TorchModule,
    check_local_model_dir,
    model_max_length,
    not_found,
    torch_dtype,
)
from ..utils._optional import require
from ..utils._units import UnitBatch, UnitResults, unit_keys
from ..utils._validation import (
    check_columns,
    check_dataframe,
    check_text_column,
    check_unicode,
    first_labels,
)
from ..utils._warnings import warn_user


class CausalLM(TorchModule):
    """A tokenizer and a causal language model, ready for inference."""

    def __init__(
        self, model, *, device, dtype, trust_remote_code, local_files_only, hint: str = ""
    ):
        tf = require("transformers", "The scorers")
        require("torch", "The scorers")
        name = str(model)
        check_local_model_dir(name, "transformers")
        try:
            self.tokenizer = tf.AutoTokenizer.from_pretrained(
                name, trust_remote_code=trust_remote_code, local_files_only=local_files_only
            )
            self.model = tf.AutoModelForCausalLM.from_pretrained(
                name,
                dtype=torch_dtype(self.torch, dtype),
                trust_remote_code=trust_remote_code,
                local_files_only=local_files_only,
            )
        except LOAD_ERRORS as exc:
            raise not_found(name, exc, hint) from exc
        self.model.to(device).eval()
        self.device = device
        self.context = model_max_length(self.tokenizer, self.model)
        tok = self.tokenizer
        self.pad_id = next(
            (i for i in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) if i is not None), 0
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_step0_processors", None)  # a closure, rebuilt on first use
        return state

    def encode(self, text: str, special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special_tokens)

    def first_token_scores(self, sequences: list[list[int]], token_ids: list[int]) -> np.ndarray:
        """``(n, len(token_ids))``: generate's first scores at ``token_ids``
        (the generation config's processors applied)."""
        from ._first_token import first_token_scores

        return first_token_scores(self, sequences, token_ids)

    def sequence_losses(self, sequences: list[list[int]], starts: list[int]) -> np.ndarray:
        """Mean cross-entropy of each sequence's tokens from ``starts[k]`` on (IFD)."""
        from ._perplexity import sequence_losses

        return sequence_losses(self, sequences, starts)

    def left_padded(self, sequences: list[list[int]]):
        """``(input_ids, attention_mask)`` tensors, padded on the left."""
        torch = self.torch
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for k, seq in enumerate(sequences):
            ids[k, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[k, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)


@dataclass
class Prompts:
    """The prompts of an input: one per row, or one per conversation turn."""

    fields: list[dict[str, str]]  # the template's fields of each unit
    row: np.ndarray  # the row position of each unit
    labels: pd.Index  # every row's label
    conversation: bool


# Parameters every LM scorer has (subclasses add their own columns).
LM_SCORER_CONSTRAINTS: dict = {
    "model": [str, os.PathLike],
    "instruction_col": [str],
    "messages_col": [str, None],
    "output_col": [str],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "max_length": [Interval(Integral, 8, None, closed="left"), None],
    "device": [str, None],
    "dtype": [StrOptions({"float32", "float16", "bfloat16"})],
    "on_error": [StrOptions({"raise", "nan"})],
    "cache": [str, os.PathLike, HasMethods(["cache"]), None],
    "show_progress_bar": ["boolean", None],
    "trust_remote_code": ["boolean"],
    "local_files_only": ["boolean"],
    "store_weights_in_pickle": ["boolean"],
    "backend": [StrOptions({"transformers", "vllm"})],
    "backend_kwargs": [dict, None],
}


class BaseLMScorer(BaseModelTransformer):
    """Base class of the language-model scorers (not for direct use).

    Subclasses set ``_fields`` (template fields, e.g. ``("instruction",)``),
    map them to columns in ``_field_columns``, and compute scores in
    ``_score_batches``.
    """

    _fields: tuple[str, ...] = ("instruction",)
    _loading_params = frozenset(
        {"model", "dtype", "trust_remote_code", "local_files_only", "backend", "backend_kwargs"}
    )

    def _model_key(self):
        # Every LM scorer loads the same kind of object: one per model, shared
        # by ComplexityScorer, QualityScorer and IFDScorer. A vLLM engine is
        # sized for the longest prompt too.
        key = ("causal-lm", *super()._model_key()[1:])
        return (*key, ("max_length", self.max_length)) if self.backend == "vllm" else key

    _what = "score"  # how a failure is described
    _cache_kind = "scores"
    _n_values = 1  # floats per unit (the cache stores them as one vector)

    def _field_columns(self) -> dict[str, str]:
        """``{field: column}`` for row input (not used with ``messages_col``)."""
        return {"instruction": self.instruction_col}

    def _load_model(self, device: str):
        if self.backend == "vllm":
            from ._vllm import VLLMCausalLM

            return VLLMCausalLM(
                self.model,
                device=None if self.device is None else device,
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
                local_files_only=self.local_files_only,
                max_length=self.max_length,
                backend_kwargs=self.backend_kwargs,
            )
        return CausalLM(
            self.model,
            device=device,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            local_files_only=self.local_files_only,
        )

    def _check_params(self) -> None:
        # vllm is imported only when backend="vllm" (it checks the keys).
        from ..utils._vllm import check_backend_params

        check_backend_params(self.backend, self.backend_kwargs)

    def _check_model(self) -> None:
        super()._check_model()
        if self.backend == "vllm":  # a generation setting vLLM cannot reproduce: refused now
            from ._vllm import check_generation_config

            check_generation_config(
                self.model,
                trust_remote_code=self.trust_remote_code,
                local_files_only=self.local_files_only,
            )

    # -- the shared shell ------------------------------------------------------

    def _input_columns(self) -> dict:
        if self.messages_col is not None:
            return {"messages_col": self.messages_col}
        # Fields are named after their parameters: "instruction" -> instruction_col.
        return {f"{f}_col": c for f, c in self._field_columns().items()}

    def _added_columns(self) -> list[str]:
        return [self.output_col]

    def _check_input(self, X) -> tuple[pd.DataFrame, Prompts]:
        X = check_dataframe(X, type(self).__name__)
        check_columns(X, self._input_columns())
        if self.messages_col is not None:
            units, rows = [], []
            for pos, conv in enumerate(check_messages_column(X[self.messages_col])):
                for turn in conv.turns:
                    units.append({"instruction": turn.user, "response": turn.reply or ""})
                    rows.append(pos)
            fields = [{f: u[f] for f in self._fields} for u in units]
            rows = np.asarray(rows, dtype=np.intp)
            for f in self._fields:  # the tokenizer would crash on them, after loading
                check_unicode(
                    [u[f] for u in fields], f"Column {self.messages_col!r}", X.index[rows]
                )
            return X, Prompts(fields, rows, X.index, True)
        texts = {f: check_text_column(X[c]) for f, c in self._field_columns().items()}
        fields = [{f: texts[f][i] for f in texts} for i in range(len(X))]
        return X, Prompts(fields, np.arange(len(X)), X.index, False)

    # -- the compute core's hooks ------------------------------------------------

    def _units(self, prompts: Prompts) -> Units:
        keys = unit_keys(repr(sorted(f.items())) for f in prompts.fields)
        return Units(keys, prompts.row, len(prompts.labels))

    def _value_shape(self) -> tuple[int, type]:
        return self._n_values, np.float64

    def _cache_identity(self) -> str:
        return f"{type(self).__name__}|{self._lm_identity()}|{self._cache_params()}"

    def _lm_identity(self) -> str:
        """The model's content and how it runs: what its scores depend on."""
        digest = model_digest(self.model, cache=self.cache)
        if digest is None:  # a hub model not downloaded yet: load it to know its files
            self._get_model()
            digest = model_digest(self.model, cache=self.cache)
        return f"{self.backend}|{digest}|{self.dtype}"

    def _compute_units(self, prompts: Prompts, positions, isolated):
        lm = self._get_model()
        fields = [prompts.fields[p] for p in positions.tolist()]
        stream = self._score_batches(lm, fields, isolated)
        while True:
            try:
                batch = next(stream)
            except StopIteration as stop:  # which units had their text cut
                return {"truncated": positions[np.asarray(stop.value, dtype=np.intp)]}
            yield UnitBatch(
                positions[batch.positions],
                batch.values.reshape(len(batch.positions), self._n_values),
                {int(positions[k]): exc for k, exc in batch.errors.items()},
            )

    def _score_batches(self, lm, fields: list[dict[str, str]], isolated: np.ndarray):
        """Yield :class:`UnitBatch` es over ``fields`` (local positions); return
        the local positions of the units whose text was cut to fit. Units marked
        ``isolated`` go in batches of one."""
        raise NotImplementedError

    def _columns(self, prompts: Prompts, results: UnitResults) -> dict:
        values = results.values[:, 0] if self._n_values == 1 else results.values
        self._handle_failures(results.errors, prompts)
        n_truncated = int(results.copies(results.extra.get("truncated", [])).sum())
        if n_truncated:
            warn_user(self._truncation_message(n_truncated), TruncationWarning)
        return self._outputs(values, prompts)

    def _truncation_message(self, n_truncated: int) -> str:
        return (
            f"{type(self).__name__}: {n_truncated} prompts were longer than "
            f"max_length={self._max_length(self._get_model())} tokens; their text was cut "
            "to fit (the template and its closing cue are kept)."
        )

    def _outputs(self, values: np.ndarray, prompts: Prompts) -> dict:
        """The added columns: one float per row, or a list per conversation."""
        if not prompts.conversation:
            return {self.output_col: values}
        per_row = [[] for _ in range(len(prompts.labels))]
        for value, row in zip(values.tolist(), prompts.row, strict=True):
            per_row[row].append(value)
        return {self.output_col: per_row}

    def _max_length(self, lm) -> int:
        return self.max_length or lm.context

    def _cache_params(self) -> str:
        """Parameters besides the model that change a score."""
        return f"max_length={self.max_length}"

    def _handle_failures(self, errors: dict, prompts: Prompts) -> None:
        if not errors:
            return
        failed_units = sorted(errors)
        failed_rows = np.zeros(len(prompts.labels), dtype=bool)
        failed_rows[prompts.row[failed_units]] = True
        first = failed_units[0]
        label = prompts.labels[prompts.row[first]]
        if self.on_error == "raise":
            raise ScoringError(
                f"{type(self).__name__} could not {self._what} row {label!r} "
                f"({len(failed_units)} prompts failed in all): {errors[first]}. "
                "Pass on_error='nan' to write NaN for failed rows instead."
            ) from errors[first]
        warn_user(
            f"{type(self).__name__}: {int(failed_rows.sum())} rows could not be scored and "
            f"hold NaN (first: {first_labels(prompts.labels, failed_rows)}); first error: "
            f"{errors[first]}",
            ScoringFailedWarning,
        )


def sorted_batches(lengths, batch_size: int):
    """Batches of positions, longest first, ``batch_size`` at a time."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# A sequence joins a batch if it needs at most this much padding (a fraction
# of the batch's longest sequence, or _PAD_TOKENS tokens).
_PAD_FRACTION, _PAD_TOKENS = 0.25, 16


def length_batches(lengths, batch_size: int):
    """Batches of positions, longest first, each at most ``batch_size`` long
    and padded by at most a quarter of its longest sequence (or 16 tokens):
    a short sequence never waits in a batch of long ones."""
    lengths = np.asarray(lengths, dtype=np.int64)
    batch: list[int] = []
    for i in np.argsort(-lengths, kind="stable").tolist():
        if batch:
            first = lengths[batch[0]]
            if len(batch) == batch_size or first - lengths[i] > max(
                _PAD_TOKENS, _PAD_FRACTION * first
            ):
                yield np.asarray(batch, dtype=np.intp)
                batch = []
        batch.append(i)
    if batch:
        yield np.asarray(batch, dtype=np.intp)


def iter_batches(batches, score_batch):
    """Score units batch by batch, isolating failures.

    ``batches`` yields arrays of unit positions (:func:`sorted_batches`,
    :func:`length_batches`); ``score_batch(positions) -> float64 array``
    scores the units at ``positions``. A batch that raises is retried one
    unit at a time, so one bad unit fails alone and its neighbours are still
    scored; a non-finite value is a failure too. Yields one
    :class:`~skdeita.utils._units.UnitBatch` per batch.
    """
    for batch in batches:
        values = np.full(len(batch), np.nan)
        errors: dict = {}
        _score_isolating(batch, score_batch, values, errors)
        for k in np.flatnonzero(~np.isfinite(values)).tolist():
            i = int(batch[k])
            errors.setdefault(
                i, FloatingPointError("the model gave a non-finite value for this prompt")
            )
        yield UnitBatch(np.asarray(batch, dtype=np.intp), values, errors)


# What a model can raise on one prompt (out of memory, an index past the
# vocabulary or the context); anything else is a bug and propagates.
_UNIT_ERRORS = (RuntimeError, ValueError, IndexError, FloatingPointError)


def _score_isolating(batch, score_batch, values, errors) -> None:
    """``values[k]`` for ``batch[k]``; a unit that raises goes to ``errors``."""
    try:
        values[:] = score_batch(batch)
        return
    except _UNIT_ERRORS as exc:
        if len(batch) == 1:
            errors[int(batch[0])] = exc
            return
    for k, i in enumerate(batch):
        try:
            values[k] = score_batch(np.array([i]))[0]
        except _UNIT_ERRORS as exc:
            errors[int(i)] = exc
