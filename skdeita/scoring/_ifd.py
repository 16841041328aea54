"""Superfiltering's Instruction-Following Difficulty (IFD), batched and honest.

IFD (Li et al. 2024, Cherry_LLM; computed with GPT-2 in Superfiltering) is
the perplexity of a response conditioned on its prompt-formatted
instruction over its perplexity alone, response tokens only. What the
Superfiltering code (tianyi-lab/Superfiltering, ``code_ifd/data_analysis.py``
and ``code_ifd/put_analysis_to_data.py``) computes, and what is reproduced
here token for token:

- the prompt is ``"{instruction}\\n"``, or ``"{instruction}\\n{input}\\n"``
  for a row with a non-empty input; ``whole = prompt + response``;
- every encoding is ``tokenizer.encode`` with the tokenizer's own special
  tokens;
- conditioned: ``whole`` encoded with truncation at ``max_length``; labels
  before ``len(encode(prompt))`` (the prompt encoded alone, not truncated)
  are masked; the model's loss (mean cross-entropy of the shifted labels)
  gives ``ppl = exp(loss)``;
- alone: the response encoded with truncation at
  ``max_length - len(encode(prompt, truncated at max_length)) + 1``; loss
  over all its tokens (the first is never predicted: there is no BOS);
- ``IFD = ppl_conditioned / ppl_alone``.

What differs, and why:

- sequences are scored in length-sorted batches, padded on the right with an
  attention mask and explicit position ids, each row's loss taken over its
  own tokens only, so a score does not depend on the batch size or the
  row's neighbours (identical sequences are scored once);
- ``max_length`` is capped at the model's context (Superfiltering's 1024 is
  GPT-2's; a longer sequence would crash a model with a shorter context);
- a failure is an error or NaN, never Superfiltering's 0; an empty response
  (which Superfiltering skips) has no IFD, and neither has a row with no
  response token left to score.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..utils._units import UnitBatch, batch_plan
from ..utils._validation import (
    check_columns,
    check_dataframe,
    check_text_column,
    first_labels,
    template_fields,
)
from ._base import (
    LM_SCORER_CONSTRAINTS,
    BaseLMScorer,
    Prompts,
    iter_batches,
    length_batches,
)
from ._perplexity import encode_rows

# Superfiltering, code_ifd/data_analysis.py, PROMPT_DICT_NONE: (no input, with input).
SUPERFILTERING_TEMPLATES = ("{instruction}\n", "{instruction}\n{input}\n")
# Cherry_LLM, cherry_seletion/data_by_IFD.py, PROMPT_DICT (the Alpaca template).
ALPACA_TEMPLATES = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:",
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:",
)
TEMPLATE_PRESETS = {"superfiltering": SUPERFILTERING_TEMPLATES, "alpaca": ALPACA_TEMPLATES}
_FIELDS = frozenset({"instruction", "input"})


def resolve_templates(prompt_template, input_col) -> tuple[str, str | None]:
    """``(template for rows without input, template for rows with one)``.

    Raises a ValueError, before any model loads, for a template without
    ``{instruction}``, with an unknown field, or with ``{input}`` where no
    input can fill it.
    """
    spec = "superfiltering" if prompt_template is None else prompt_template
    if isinstance(spec, str) and spec in TEMPLATE_PRESETS:
        pair = TEMPLATE_PRESETS[spec]
        return pair[0], (pair[1] if input_col is not None else None)
    if isinstance(spec, str):
        fields = _template_fields(spec, "prompt_template")
        if "input" in fields and input_col is None:
            raise ValueError(
                f"prompt_template={spec!r} has an {{input}} field but input_col is None; "
                "set input_col to the column of inputs."
            )
        if "input" not in fields and input_col is not None:
            raise ValueError(
                f"input_col={input_col!r} is set but prompt_template={spec!r} has no "
                "{input} field, so the inputs would be ignored; add it, or pass a pair "
                "(template without input, template with input)."
            )
        return spec, (spec if input_col is not None else None)
    if isinstance(spec, tuple | list) and len(spec) == 2 and all(isinstance(t, str) for t in spec):
        plain, with_input = spec
        if "input" in _template_fields(plain, "prompt_template[0]"):
            raise ValueError(
                f"prompt_template[0]={plain!r} is the template of rows without input; "
                "it must not have an {input} field."
            )
        if "input" not in _template_fields(with_input, "prompt_template[1]"):
            raise ValueError(
                f"prompt_template[1]={with_input!r} is the template of rows with an "
                "input; it needs an {input} field."
            )
        return plain, (with_input if input_col is not None else None)
    raise ValueError(
        f"prompt_template={prompt_template!r} must be None (Superfiltering's), one of "
        f"{sorted(TEMPLATE_PRESETS)}, a str.format template with an {{instruction}} "
        "field, or a pair (template without input, template with input)."
    )


def _template_fields(template: str, param: str) -> list[str]:
    fields = template_fields(template, param=param)
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise ValueError(
            f"{param}={template!r} names {unknown}; an IFD prompt template may only use "
            "{instruction} and {input} (the response is appended after the prompt)."
        )
    if "instruction" not in fields:
        raise ValueError(f"{param}={template!r} needs an {{instruction}} field.")
    return fields


class IFDScorer(BaseLMScorer):
    """Superfiltering's Instruction-Following Difficulty (IFD) of each row.

    ``fit`` learns nothing (it checks the columns and the template);
    ``transform`` returns a copy of the frame with ``output_col`` added: the
    perplexity of the response conditioned on the prompt-formatted
    instruction over its perplexity alone, response tokens only, exactly as
    the Superfiltering code computes it (see :doc:`/scoring`). A small model
    (GPT-2, 124M parameters) is enough: it runs on a laptop CPU.

    IFD < 1: the instruction helps predict the response. IFD >= 1: it does
    not (the pair is likely misaligned); Superfiltering drops those rows, then
    keeps the highest IFD.

    Parameters
    ----------
    model : str or path-like, default="gpt2"
        A hub name or a local directory holding a causal LM and its
        tokenizer (Superfiltering uses GPT-2).
    instruction_col : str, default="instruction"
        Column of instructions.
    response_col : str, default="response"
        Column of responses (Superfiltering's ``output``).
    input_col : str or None, default=None
        Column of inputs (Alpaca's ``input``). Rows with a non-empty input
        use the template with input; a missing input (None/NaN) is no input.
    output_col : str, default="ifd_score"
        Name of the added IFD column.
    prompt_template : str, pair of str or None, default=None
        How the instruction becomes the prompt the response is appended to.
        None (or ``"superfiltering"``): Superfiltering's ``"{instruction}\\n"``,
        and ``"{instruction}\\n{input}\\n"`` for rows with an input.
        ``"alpaca"``: the Alpaca template of Cherry_LLM (IFD's first paper).
        A ``str.format`` template with ``{instruction}`` (and ``{input}``
        when ``input_col`` is set) for every row, or a pair (template
        without input, template with input).
    perplexity_cols : pair of str or None, default=None
        Also add the two perplexities: names of the (conditioned, alone)
        columns, e.g. ``("ppl_A_condition", "ppl_A_direct")`` as
        Superfiltering names them.
    max_length : int or None, default=1024
        Token limit of prompt + response (Superfiltering's 1024, GPT-2's
        context), capped at the model's context; None means the model's
        context. Longer rows are cut as Superfiltering cuts them (prompt +
        response to ``max_length`` tokens, the response alone to
        ``max_length`` minus the prompt's tokens plus one), with a
        :class:`~skdeita.exceptions.TruncationWarning`.
    batch_size : int, default=16
        Sequences per forward pass (each row has two: prompt + response, and
        the response alone), length-sorted; never changes a score. On a GPU
        a larger batch is faster.
    device : str or None, default=None
        None picks CUDA when available, else CPU.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Weights' dtype. Superfiltering loads float32.
    on_error : {"raise", "nan"}, default="raise"
        A row without an IFD (an empty response; no response token left to
        score within ``max_length``; a one-token response, whose perplexity
        alone predicts no token; a model failure): raise a
        :class:`~skdeita.exceptions.ScoringError` naming the row (empty
        responses: a ValueError before the model loads), or write NaN and
        warn once (:class:`~skdeita.exceptions.ScoringFailedWarning`). Never
        Superfiltering's 0.
    cache : str, path, joblib.Memory or None, default=None
        Where to keep scores across fits, clones and grid-search folds.
    show_progress_bar : bool or None, default=None
        tqdm bar; None shows it only on a terminal.
    trust_remote_code : bool, default=False
        Passed to the loaders; never on unless you set it.
    local_files_only : bool, default=False
        Never reach a hub.
    store_weights_in_pickle : bool, default=False
        Pickle the loaded model too; by default it reloads on first use.
    backend : {"transformers", "vllm"}, default="transformers"
        ``"vllm"`` runs the model on a vLLM engine (``pip install
        'skdeita[vllm]'``): the same prompts, truncation and scores (equal to
        the transformers backend to float rounding), at vLLM's speed on a GPU.
        The engine starts on the first batch to compute, once per process.
    backend_kwargs : dict or None, default=None
        Settings of ``vllm.LLM`` (``gpu_memory_utilization``,
        ``tensor_parallel_size``, ``max_model_len``, ...); checked before any
        engine starts. Only with ``backend="vllm"``.

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Input column names seen in ``fit``.

    See Also
    --------
    skdeita.QualityScorer : DEITA's response quality score (a 13B model).
    skdeita.DeitaSelector : Select with ``ifd_score`` as the quality column.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import IFDScorer
    >>> from skdeita._testing import make_tiny_gpt2
    >>> path = make_tiny_gpt2(getfixture("tmp_path") / "gpt2")
    >>> df = pd.DataFrame({
    ...     "instruction": ["How do I sort a list in Python?", "Write a poem about the sea."],
    ...     "response": ["Use sorted(xs) or xs.sort().", "The wind at night, the sea."],
    ... })
    >>> out = IFDScorer(path, show_progress_bar=False).fit_transform(df)
    >>> bool(out["ifd_score"].gt(0).all())
    True
    """

    _parameter_constraints: dict = {
        **{k: v for k, v in LM_SCORER_CONSTRAINTS.items() if k != "messages_col"},
        "response_col": [str],
        "input_col": [str, None],
        "prompt_template": [str, tuple, list, None],
        "perplexity_cols": [tuple, list, None],
    }
    _fields = ("prompt", "response")
    _what = "compute the IFD of"
    _n_values = 3  # IFD, perplexity conditioned, perplexity alone
    messages_col = None  # rows only: Superfiltering's IFD is one instruction, one response

    def __init__(
        self,
        model="gpt2",
        *,
        instruction_col: str = "instruction",
        response_col: str = "response",
        input_col: str | None = None,
        output_col: str = "ifd_score",
        prompt_template=None,
        perplexity_cols=None,
        max_length: int | None = 1024,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "float32",
        on_error: str = "raise",
        cache=None,
        show_progress_bar: bool | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        store_weights_in_pickle: bool = False,
        backend: str = "transformers",
        backend_kwargs: dict | None = None,
    ):
        self.model = model
        self.instruction_col = instruction_col
        self.response_col = response_col
        self.input_col = input_col
        self.output_col = output_col
        self.prompt_template = prompt_template
        self.perplexity_cols = perplexity_cols
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.on_error = on_error
        self.cache = cache
        self.show_progress_bar = show_progress_bar
        self.trust_remote_code = trust_remote_code
        self.local_files_only = local_files_only
        self.store_weights_in_pickle = store_weights_in_pickle
        self.backend = backend
        self.backend_kwargs = backend_kwargs

    # -- columns and input -----------------------------------------------------

    def _field_columns(self) -> dict[str, str]:
        columns = {"instruction": self.instruction_col, "response": self.response_col}
        if self.input_col is not None:
            columns["input"] = self.input_col
        return columns

    def _perplexity_cols(self) -> list[str]:
        cols = self.perplexity_cols
        if cols is None:
            return []
        if len(cols) != 2 or not all(isinstance(c, str) for c in cols):
            raise ValueError(
                f"perplexity_cols={cols!r} must be None or two column names (conditioned, alone)."
            )
        if len({*cols, self.output_col}) != 3:
            raise ValueError(
                f"perplexity_cols={cols!r} and output_col={self.output_col!r} must be "
                "three different names."
            )
        return list(cols)

    def _added_columns(self) -> list[str]:
        return [self.output_col, *self._perplexity_cols()]

    def _check_params(self) -> None:
        super()._check_params()
        resolve_templates(self.prompt_template, self.input_col)
        self._perplexity_cols()

    def _check_input(self, X) -> tuple[pd.DataFrame, Prompts]:
        X = check_dataframe(X, type(self).__name__)
        plain, with_input = resolve_templates(self.prompt_template, self.input_col)
        check_columns(X, self._input_columns())
        instructions = check_text_column(X[self.instruction_col])
        responses = check_text_column(X[self.response_col])
        if self.input_col is not None:
            inputs = check_text_column(X[self.input_col], on_missing="empty")
        else:
            inputs = [""] * len(X)
        empty = np.array([r == "" for r in responses], dtype=bool)
        if empty.any() and self.on_error == "raise":
            raise ValueError(
                f"Column {self.response_col!r} has empty responses at rows "
                f"{first_labels(X.index, empty)} ({int(empty.sum())} in all): IFD is "
                "undefined without a response (Superfiltering skips these rows). Drop "
                "them, or pass on_error='nan' to give them NaN."
            )
        fields = []
        for instruction, inp, response in zip(instructions, inputs, responses, strict=True):
            if inp and with_input is not None:
                prompt = with_input.format_map({"instruction": instruction, "input": inp})
            else:
                prompt = plain.format_map({"instruction": instruction, "input": inp})
            fields.append({"prompt": prompt, "response": response})
        return X, Prompts(fields, np.arange(len(X)), X.index, False)

    # -- scoring ---------------------------------------------------------------

    def _max_length(self, lm) -> int:
        if self.max_length is None:
            return lm.context
        return min(int(self.max_length), lm.context)

    def _score_batches(self, lm, units: list[dict[str, str]], isolated: np.ndarray):
        """IFD, perplexity conditioned and perplexity alone of each unit: (k, 3)
        per batch. A unit is two sequences (conditioned, alone), each scored
        once however many units share it; a unit is yielded as soon as the
        batches holding its two sequences are done."""
        tok = lm.tokenizer
        max_length = self._max_length(lm)
        n = len(units)
        errors: dict = {}
        responses = [u["response"] for u in units]
        rows = encode_rows(tok, [u["prompt"] for u in units], responses, max_length)
        truncated = []
        items: dict[tuple, int] = {}  # (start, digest of the ids, alone?) -> item position
        sequences, starts, item_isolated = [], [], []
        unit_items = np.full((n, 2), -1, dtype=np.intp)
        for i, (n_prompt, whole, alone, cut) in enumerate(rows):
            problem = _unscorable(responses[i], n_prompt, whole, alone, max_length)
            if problem is not None:
                errors[i] = ValueError(problem)
                continue
            if cut:
                truncated.append(i)
            for kind, (seq, st) in enumerate(((whole, max(n_prompt, 1)), (alone, 1))):
                # An isolated unit's sequences are scored alone too (own items).
                key = (st, hashlib.blake2b(seq.tobytes(), digest_size=16).digest(), isolated[i])
                if key not in items:
                    items[key] = len(sequences)
                    sequences.append(seq)
                    starts.append(st)
                    item_isolated.append(bool(isolated[i]))
                unit_items[i, kind] = items[key]
        if errors:
            failed = np.fromiter(errors, dtype=np.intp)
            yield UnitBatch(failed, np.full((len(failed), 3), np.nan), errors)

        def score(batch):
            return lm.sequence_losses([sequences[k] for k in batch], [starts[k] for k in batch])

        lengths = np.array([len(seq) for seq in sequences], dtype=np.int64)
        plan = batch_plan(
            np.asarray(item_isolated, dtype=bool),
            lambda idx: length_batches(lengths[idx], self.batch_size),
        )
        losses = np.full(len(sequences), np.nan)
        item_errors: dict = {}
        pending = np.count_nonzero(unit_items >= 0, axis=1)
        users: dict[int, list[int]] = {}
        for i, pair in enumerate(unit_items.tolist()):
            for k in set(pair) - {-1}:
                users.setdefault(k, []).append(i)
        for batch in iter_batches(plan, score):
            losses[batch.positions] = batch.values
            item_errors.update(batch.errors)
            done = []
            for k in batch.positions.tolist():
                for i in users.get(k, ()):
                    pending[i] -= 1 if unit_items[i, 0] != unit_items[i, 1] else 2
                    if pending[i] <= 0:
                        done.append(i)
            if done:
                yield self._unit_values(
                    np.asarray(sorted(set(done))), unit_items, losses, item_errors
                )
        return truncated

    @staticmethod
    def _unit_values(done, unit_items, losses, item_errors) -> UnitBatch:
        """IFD and the two perplexities of finished units."""
        errors = {}
        for i in done.tolist():
            for k in unit_items[i]:
                if int(k) in item_errors:
                    errors[i] = item_errors[int(k)]
        values = np.full((len(done), 3), np.nan)
        with np.errstate(over="ignore", invalid="ignore"):
            ppl = np.exp(losses[unit_items[done]])
            values[:, 1:] = ppl
            values[:, 0] = ppl[:, 0] / ppl[:, 1]
        for j in np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist():
            errors.setdefault(int(done[j]), FloatingPointError("a perplexity overflowed"))
        return UnitBatch(done, values, errors)

    # -- output (three values per row) ----------------------------------------

    def _cache_params(self) -> str:
        return f"max_length={self.max_length}|ifd-v1"

    def _truncation_message(self, n_truncated: int) -> str:
        return (
            f"IFDScorer: {n_truncated} rows were longer than "
            f"max_length={self._max_length(self._get_model())} tokens and were cut as "
            "Superfiltering cuts them (prompt + response to max_length tokens, the "
            "response alone to max_length minus the prompt's tokens plus one)."
        )

    def _outputs(self, values: np.ndarray, prompts: Prompts) -> dict:
        out = {self.output_col: values[:, 0]}
        for name, column in zip(self._perplexity_cols(), (1, 2), strict=False):
            out[name] = values[:, column]
        return out


def _unscorable(response: str, n_prompt: int, whole, alone, max_length: int) -> str | None:
    """Why a row has no IFD (None: it has one)."""
    if response == "":
        return "the response is empty: IFD is undefined (Superfiltering skips it)"
    if max(n_prompt, 1) >= len(whole):
        return (
            f"the prompt fills max_length={max_length} tokens: no response token is left to score"
        )
    if len(alone) < 2:
        return (
            f"the response alone is {len(alone)} token(s) (within max_length): with no "
            "token before it, its perplexity alone predicts no token"
        )
    return None
