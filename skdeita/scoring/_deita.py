"""DEITA's complexity and quality scorers (Liu et al. 2024), batched and honest.

The score of one prompt, as the DEITA repository computes it with
transformers: the prompt (DEITA's template filled with ``str.format``) is
encoded with the tokenizer's own special tokens; greedy ``generate`` gives
the logits of the first generated token (after the model's generation
config's logits processors); the entries at the ids of the tokens "1" ...
"6" are softmaxed, and the score is the expected value with weights 1 ... 6.

What differs, and why:

- the six ids are looked up in the tokenizer, not hard-coded for Llama's
  vocabulary, so any Llama- or Mistral-architecture scorer works;
- prompts are scored in length-sorted batches, padded on the left with an
  attention mask: one ``generate`` step per batch instead of per row, with
  the same score for every row at any batch size;
- a prompt longer than ``max_length`` has its text cut *inside* the
  template, so the closing cue ("##Complexity: ") is always there;
- a failure is an error or NaN, never DEITA's silent 3.0.
"""

from __future__ import annotations

import numpy as np

from ..utils._units import UnitBatch, batch_plan
from ._base import LM_SCORER_CONSTRAINTS, BaseLMScorer, iter_batches, sorted_batches

COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following "
    "user query. \n##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response "
    "corresponding to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} "
    "\n##Quality: "
)
SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")


def digit_token_ids(tokenizer, model_name: str) -> list[int]:
    """The ids of the tokens "1" ... "6" in the scorer's vocabulary."""
    ids = [tokenizer.convert_tokens_to_ids(d) for d in SCORE_DIGITS]
    missing = [d for d, i in zip(SCORE_DIGITS, ids, strict=True) if i is None]
    missing += [
        d
        for d, i in zip(SCORE_DIGITS, ids, strict=True)
        if i is not None and i == tokenizer.unk_token_id
    ]
    if missing:
        raise ValueError(
            f"The tokenizer of {model_name!r} has no token for {missing}: DEITA's scorers "
            "read their score from the logits of the tokens '1' ... '6'. Is this a DEITA "
            "scorer model?"
        )
    return ids


def encode_within(lm, template: str, fields: dict[str, str], max_length: int):
    """Token ids of the filled template, its text cut to fit ``max_length``.

    Returns ``(ids, truncated)``. The longest field is cut first, by the
    tokens it overflows, until the prompt fits; the template's text (and so
    its closing cue) is never cut.
    """
    ids = lm.encode(template.format(**fields))
    if len(ids) <= max_length:
        return ids, False
    fields = dict(fields)
    tokens = {f: lm.encode(v, special_tokens=False) for f, v in fields.items()}
    for _ in range(16):  # decode/encode may shift a token or two: converge
        over = len(ids) - max_length
        if over <= 0:
            return ids, True
        name = max(tokens, key=lambda f: len(tokens[f]))
        if not tokens[name]:
            break
        tokens[name] = tokens[name][: max(0, len(tokens[name]) - over)]
        fields[name] = lm.tokenizer.decode(tokens[name])
        ids = lm.encode(template.format(**fields))
    raise ValueError(f"the prompt cannot be cut to {max_length} tokens")


def expected_digit_scores(lm, sequences: list[list[int]], digit_ids: list[int]) -> np.ndarray:
    """DEITA's score of each prompt: E[digit] under the softmax over "1" ... "6"."""
    logits = lm.first_token_scores(sequences, digit_ids)
    with np.errstate(invalid="ignore", over="ignore"):
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs @ np.arange(1.0, 7.0)


class _DeitaScorer(BaseLMScorer):
    """The shared body of DEITA's two scorers."""

    _template: str

    def _score_batches(self, lm, units: list[dict[str, str]], isolated: np.ndarray):
        digit_ids = getattr(lm, "deita_digit_ids", None)
        if digit_ids is None:
            digit_ids = lm.deita_digit_ids = digit_token_ids(lm.tokenizer, str(self.model))
        max_length = self._max_length(lm)
        empty = {f: "" for f in self._fields}
        overhead = len(lm.encode(self._prompt(empty)))
        if overhead >= max_length:
            raise ValueError(
                f"max_length={max_length} leaves no room for text: {type(self).__name__}'s "
                f"template alone is {overhead} tokens."
            )
        sequences: list[list[int] | None] = []
        errors: dict = {}
        truncated = []
        for i, fields in enumerate(units):
            try:
                ids, cut = encode_within(
                    lm, self._template, self._format_fields(fields), max_length
                )
            except ValueError as exc:
                errors[i] = exc
                ids, cut = None, False
            sequences.append(ids)
            if cut:
                truncated.append(i)
        if errors:  # prompts that cannot be cut to fit fail alone, before any batch
            failed = np.fromiter(errors, dtype=np.intp)
            yield UnitBatch(failed, np.full(len(failed), np.nan), errors)
        todo = np.array([i for i, s in enumerate(sequences) if s is not None], dtype=np.intp)
        lengths = np.array([len(sequences[i]) for i in todo], dtype=np.int64)

        def score(batch):
            return expected_digit_scores(lm, [sequences[i] for i in batch], digit_ids)

        plan = batch_plan(isolated[todo], lambda idx: sorted_batches(lengths[idx], self.batch_size))
        yield from iter_batches((todo[b] for b in plan), score)
        return truncated

    def _format_fields(self, fields: dict[str, str]) -> dict[str, str]:
        return fields

    def _prompt(self, fields: dict[str, str]) -> str:
        return self._template.format(**self._format_fields(fields))


_SHARED_DOC = """
    Parameters
    ----------
    model : str or path-like, default="{model}"
        A hub name or a local directory holding a causal LM and its tokenizer
        (DEITA's scorers are Llama-13B and Mistral-7B fine-tunes; any causal
        LM whose vocabulary has the tokens "1" ... "6" works).
    instruction_col : str, default="instruction"
        Column of instructions (user queries).{response_param}
    messages_col : str or None, default=None
        Column of conversations (a list of ShareGPT or OpenAI messages per
        row). When set, every user message is scored on its own, as DEITA's
        pipeline does, and ``output_col`` holds a list of per-turn scores.
    output_col : str, default="{output}"
        Name of the added score column (what :class:`~skdeita.DeitaSelector`
        reads by default).
    batch_size : int, default=8
        Prompts per forward pass (length-sorted); never changes a score.
    max_length : int or None, default=None
        Token limit of a prompt; None means the model's context. Longer
        prompts have their text cut inside the template (the closing cue is
        kept), with a :class:`~skdeita.exceptions.TruncationWarning`.
    device : str or None, default=None
        None picks CUDA when available, else CPU.
    dtype : {{"float32", "float16", "bfloat16"}}, default="float32"
        Weights' dtype. DEITA loads float32; half precision is faster on a
        GPU and can move scores in the third decimal.
    on_error : {{"raise", "nan"}}, default="raise"
        A prompt that cannot be scored: raise a
        :class:`~skdeita.exceptions.ScoringError` naming the row, or write
        NaN and warn once (:class:`~skdeita.exceptions.ScoringFailedWarning`).
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
    backend : {{"transformers", "vllm"}}, default="transformers"
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
"""


class ComplexityScorer(_DeitaScorer):
    """DEITA's instruction complexity score (1-6) of each row.

    ``fit`` learns nothing (it checks the columns); ``transform`` returns a
    copy of the frame with ``output_col`` added: the expected value of the
    scorer's answer "1" ... "6" to DEITA's complexity prompt.
    {shared}
    See Also
    --------
    skdeita.QualityScorer : The response quality score.
    skdeita.make_deita_pipeline : Scores, embeddings and selection in one pipeline.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import ComplexityScorer
    >>> from skdeita._testing import make_tiny_llama_scorer
    >>> path = make_tiny_llama_scorer(getfixture("tmp_path") / "scorer")
    >>> df = pd.DataFrame({{"instruction": ["Sort a list.", "Explain sleep tips."]}})
    >>> out = ComplexityScorer(path, show_progress_bar=False).fit_transform(df)
    >>> out["evol_instruction_score"].between(1, 6).all()
    np.True_
    """

    _parameter_constraints: dict = dict(LM_SCORER_CONSTRAINTS)
    _fields = ("instruction",)
    _template = COMPLEXITY_TEMPLATE

    def __init__(
        self,
        model="hkust-nlp/deita-complexity-scorer",
        *,
        instruction_col: str = "instruction",
        messages_col: str | None = None,
        output_col: str = "evol_instruction_score",
        batch_size: int = 8,
        max_length: int | None = None,
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
        self.messages_col = messages_col
        self.output_col = output_col
        self.batch_size = batch_size
        self.max_length = max_length
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


class QualityScorer(_DeitaScorer):
    """DEITA's response quality score (1-6) of each row.

    ``fit`` learns nothing (it checks the columns); ``transform`` returns a
    copy of the frame with ``output_col`` added: the expected value of the
    scorer's answer "1" ... "6" to DEITA's quality prompt over the
    instruction and its response.
    {shared}
    See Also
    --------
    skdeita.ComplexityScorer : The instruction complexity score.
    skdeita.make_deita_pipeline : Scores, embeddings and selection in one pipeline.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import QualityScorer
    >>> from skdeita._testing import make_tiny_llama_scorer
    >>> path = make_tiny_llama_scorer(getfixture("tmp_path") / "scorer", seed=1)
    >>> df = pd.DataFrame({{"instruction": ["Sort a list."], "response": ["Use sorted(xs)."]}})
    >>> out = QualityScorer(path, show_progress_bar=False).fit_transform(df)
    >>> float(out["evol_response_score"].iloc[0]) > 1.0
    True
    """

    _parameter_constraints: dict = {**LM_SCORER_CONSTRAINTS, "response_col": [str]}
    _fields = ("instruction", "response")
    _template = QUALITY_TEMPLATE

    def __init__(
        self,
        model="hkust-nlp/deita-quality-scorer",
        *,
        instruction_col: str = "instruction",
        response_col: str = "response",
        messages_col: str | None = None,
        output_col: str = "evol_response_score",
        batch_size: int = 8,
        max_length: int | None = None,
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
        self.messages_col = messages_col
        self.output_col = output_col
        self.batch_size = batch_size
        self.max_length = max_length
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

    def _field_columns(self) -> dict[str, str]:
        return {"instruction": self.instruction_col, "response": self.response_col}

    def _format_fields(self, fields: dict[str, str]) -> dict[str, str]:
        # DEITA's quality template names the response {output}.
        return {"instruction": fields["instruction"], "output": fields["response"]}


ComplexityScorer.__doc__ = ComplexityScorer.__doc__.format(
    shared=_SHARED_DOC.format(
        model="hkust-nlp/deita-complexity-scorer",
        output="evol_instruction_score",
        response_param="",
    )
)
QualityScorer.__doc__ = QualityScorer.__doc__.format(
    shared=_SHARED_DOC.format(
        model="hkust-nlp/deita-quality-scorer",
        output="evol_response_score",
        response_param=(
            '\n    response_col : str, default="response"\n        Column of responses.'
        ),
    )
)
