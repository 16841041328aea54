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

import hashlib
import os
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..base import BaseModelTransformer
from ..exceptions import ScoringError, ScoringFailedWarning, TruncationWarning
from ..utils._conversations import check_messages_column
from ..utils._disk_cache import VectorCache, text_key
from ..utils._loading import (
    LOAD_ERRORS,
    TorchModule,
    check_local_model_dir,
    model_max_length,
    not_found,
    torch_dtype,
    weights_fingerprint,
)
from ..utils._optional import require
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
        where = os.path.abspath(name) if os.path.isdir(name) else name
        # The weights and generation settings too: a model changed in place
        # must not be served scores cached for the old one.
        generation = self.model.generation_config.to_json_string(use_diff=False)
        self.identity = (
            f"causal-lm|{where}|{dtype}|{weights_fingerprint(self.model)}|"
            f"{hashlib.sha256(generation.encode()).hexdigest()[:16]}"
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_step0_processors", None)  # a closure, rebuilt on first use
        return state

    def encode(self, text: str, special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special_tokens)

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
class Units:
    """The prompts of an input: one per row, or one per conversation turn."""

    fields: list[dict[str, str]]  # the template's fields of each unit
    row: np.ndarray  # the row position of each unit
    labels: pd.Index  # every row's label
    conversation: bool


@dataclass
class UnitScores:
    """What a scorer's batch computation returns for a list of units."""

    values: np.ndarray  # float64, NaN where the unit failed
    errors: dict  # unit position -> the exception that made it fail
    n_truncated: int = 0


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
}


class BaseLMScorer(BaseModelTransformer):
    """Base class of the language-model scorers (not for direct use).

    Subclasses set ``_fields`` (template fields, e.g. ``("instruction",)``),
    map them to columns in ``_field_columns``, and compute scores in
    ``_score_units``.
    """

    _fields: tuple[str, ...] = ("instruction",)
    _loading_params = frozenset({"model", "dtype", "trust_remote_code", "local_files_only"})
    _what = "score"  # how a failure is described
    _n_values = 1  # floats per unit (the cache stores them as one vector)

    def _field_columns(self) -> dict[str, str]:
        """``{field: column}`` for row input (not used with ``messages_col``)."""
        return {"instruction": self.instruction_col}

    def _score_units(self, lm, units: list[dict[str, str]]) -> UnitScores:
        raise NotImplementedError

    def _load_model(self, device: str):
        return CausalLM(
            self.model,
            device=device,
            dtype=self.dtype,
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

    def _check_input(self, X) -> tuple[pd.DataFrame, Units]:
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
            return X, Units(fields, rows, X.index, True)
        texts = {f: check_text_column(X[c]) for f, c in self._field_columns().items()}
        fields = [{f: texts[f][i] for f in texts} for i in range(len(X))]
        return X, Units(fields, np.arange(len(X)), X.index, False)

    def _compute(self, lm, units: Units) -> dict:
        scores = self._cached_scores(lm, units.fields)
        self._handle_failures(scores, units)
        if scores.n_truncated:
            warn_user(self._truncation_message(lm, scores.n_truncated), TruncationWarning)
        return self._outputs(scores.values, units)

    def _truncation_message(self, lm, n_truncated: int) -> str:
        return (
            f"{type(self).__name__}: {n_truncated} prompts were longer than "
            f"max_length={self._max_length(lm)} tokens; their text was cut to fit "
            "(the template and its closing cue are kept)."
        )

    def _outputs(self, values: np.ndarray, units: Units) -> dict:
        """The added columns: one float per row, or a list per conversation."""
        if not units.conversation:
            return {self.output_col: values}
        per_row = [[] for _ in range(len(units.labels))]
        for value, row in zip(values.tolist(), units.row, strict=True):
            per_row[row].append(value)
        return {self.output_col: per_row}

    def _max_length(self, lm) -> int:
        return self.max_length or lm.context

    def _cached_scores(self, lm, fields: list[dict[str, str]]) -> UnitScores:
        """Scores of the units, reading and filling the on-disk cache.

        A unit's ``_n_values`` floats are one cached vector.
        """
        identity = f"{type(self).__name__}|{lm.identity}|{self._cache_params()}"
        cache = VectorCache.from_param(self.cache, identity, kind="scores")
        if cache is None:
            return self._score_units(lm, fields)
        keys = [text_key(repr(sorted(f.items()))) for f in fields]
        found = cache.get(keys)
        todo = [i for i, v in enumerate(found) if v is None]
        values = np.full((len(fields), self._n_values), np.nan)
        for i, v in enumerate(found):
            if v is not None:
                values[i] = v
        fresh = self._score_units(lm, [fields[i] for i in todo])
        fresh_values = fresh.values.reshape(len(todo), self._n_values)
        values[todo] = fresh_values
        ok = [k for k in range(len(todo)) if k not in fresh.errors]
        # Only successes are cached: a failure is retried next time.
        cache.put([keys[todo[k]] for k in ok], fresh_values[ok])
        errors = {todo[k]: exc for k, exc in fresh.errors.items()}
        if self._n_values == 1:
            values = values[:, 0]
        return UnitScores(values, errors, fresh.n_truncated)

    def _cache_params(self) -> str:
        """Parameters besides the model that change a score."""
        return f"max_length={self.max_length}"

    def _handle_failures(self, scores: UnitScores, units: Units) -> None:
        if not scores.errors:
            return
        failed_units = sorted(scores.errors)
        failed_rows = np.zeros(len(units.labels), dtype=bool)
        failed_rows[units.row[failed_units]] = True
        first = failed_units[0]
        label = units.labels[units.row[first]]
        if self.on_error == "raise":
            raise ScoringError(
                f"{type(self).__name__} could not {self._what} row {label!r} "
                f"({len(failed_units)} prompts failed in all): {scores.errors[first]}. "
                "Pass on_error='nan' to write NaN for failed rows instead."
            ) from scores.errors[first]
        warn_user(
            f"{type(self).__name__}: {int(failed_rows.sum())} rows could not be scored and "
            f"hold NaN (first: {first_labels(units.labels, failed_rows)}); first error: "
            f"{scores.errors[first]}",
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


def run_batches(n: int, batches, score_batch, progress, desc: str):
    """Score ``n`` units batch by batch, isolating failures.

    ``batches`` yields arrays of unit positions (:func:`sorted_batches`,
    :func:`length_batches`); ``score_batch(positions) -> float64 array``
    scores the units at ``positions``. A batch that raises is retried one
    unit at a time, so one bad unit fails alone and its neighbours are still
    scored. Returns ``(values, errors)``; a non-finite value is a failure too.
    """
    from ..utils._progress import progress_bar

    values = np.full(n, np.nan)
    errors: dict = {}
    with progress_bar(n, desc, progress) as bar:
        for batch in batches:
            _score_isolating(batch, score_batch, values, errors)
            bar.update(len(batch))
    bad = ~np.isfinite(values)
    for i in np.flatnonzero(bad):
        errors.setdefault(
            int(i), FloatingPointError("the model gave a non-finite value for this prompt")
        )
    values[bad] = np.nan
    return values, errors


# What a model can raise on one prompt (out of memory, an index past the
# vocabulary or the context); anything else is a bug and propagates.
_UNIT_ERRORS = (RuntimeError, ValueError, IndexError, FloatingPointError)


def _score_isolating(batch, score_batch, values, errors) -> None:
    try:
        values[batch] = score_batch(batch)
        return
    except _UNIT_ERRORS as exc:
        if len(batch) == 1:
            errors[int(batch[0])] = exc
            return
    for i in batch:
        try:
            values[[i]] = score_batch(np.array([i]))
        except _UNIT_ERRORS as exc:
            errors[int(i)] = exc
