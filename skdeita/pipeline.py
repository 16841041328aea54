"""DEITA end to end: one pipeline from a raw pool to a curated subset."""

from __future__ import annotations

import pandas as pd
from sklearn.pipeline import Pipeline

from .embedding import EmbeddingTransformer
from .embedding._backends import DEFAULT_MODEL
from .scoring import ComplexityScorer, QualityScorer
from .selection import DeitaSelector
from .utils._dask import is_dask_collection
from .utils._loading import default_dtype
from .utils._validation import check_columns, check_device


def check_params(steps: list, device_param: str = "device") -> None:
    """Check every step's parameters (``_parameter_constraints``, ``_check_params``
    and the device), reading no input and loading no model."""
    for step in steps:
        step._validate_params()
        step._check_params()
        check_device(getattr(step, "device", None), param=device_param)


def check_steps(steps: list, frame: pd.DataFrame, device_param: str = "device") -> None:
    """Check every step against the columns it will see, loading no model.

    Every step's parameters are checked first. Then, step by step, the
    columns it reads must be in ``frame`` or added by an earlier step
    (``_input_columns``, ``_added_columns``), and what ``frame`` already holds
    of its input is checked now, values too (``_check_partial_input``). Then
    every step's model is found (``_check_model``: a local folder holding its
    files, or a hub name, in the local cache when offline), still loading
    nothing.
    """
    check_params(steps, device_param)
    available = list(frame.columns)
    for step in steps:
        check_columns(pd.DataFrame(columns=available), step._input_columns())
        step._check_partial_input(frame)
        available += [c for c in step._added_columns() if c not in available]
    # Every model last, after the cheap checks above: a typo in the last
    # step's model path fails here, before the first step loads its model.
    for step in steps:
        step._check_model()


class DeitaPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` that checks every step first.

    Before ``fit`` or ``fit_transform`` runs any step, each step's parameters
    and the columns it will read are checked (on a Dask DataFrame, on its
    ``_meta``), so a bad selection parameter or a misspelled column fails
    before any scorer or embedder loads a model. Otherwise it is a plain
    ``Pipeline``.
    """

    def check(self, X) -> None:
        """Check every step against ``X``, loading no model (``fit`` does this first).

        Parameters
        ----------
        X : DataFrame
            The pipeline's input (pandas or Dask).
        """
        frame = X._meta if is_dask_collection(X) else X
        if isinstance(frame, pd.DataFrame):
            check_steps([s for _, s in self.steps if s is not None and s != "passthrough"], frame)

    def fit(self, X, y=None, **params):
        self.check(X)
        return super().fit(X, y, **params)

    def fit_transform(self, X, y=None, **params):
        self.check(X)
        return super().fit_transform(X, y, **params)


def make_deita_pipeline(
    data_budget: int | float | None = None,
    *,
    complexity_model="hkust-nlp/deita-complexity-scorer",
    quality_model="hkust-nlp/deita-quality-scorer",
    embedding_model=DEFAULT_MODEL,
    instruction_col: str = "instruction",
    response_col: str = "response",
    messages_col: str | None = None,
    text_template: str = "{instruction}\n\n{response}",
    conversation_template: str = "plain",
    diversity_threshold: float = 0.1,
    distance_metric="cosine",
    neighbors: str = "selected",
    output: str = "subset",
    embedding_col: str = "embedding",
    reference=None,
    device: str | None = None,
    dtype: str | None = None,
    scorer_batch_size: int = 8,
    cache=None,
    show_progress_bar: bool | None = None,
    backend: str = "transformers",
    backend_kwargs: dict | None = None,
    embedding_backend: str = "sentence-transformers",
    pooling: str = "mean",
) -> Pipeline:
    """Complexity score -> quality score -> embedding -> DEITA selection.

    The four steps, named ``complexity``, ``quality``, ``embedding`` and
    ``selection`` (so a grid search can set e.g.
    ``selection__diversity_threshold``), with DEITA's defaults: its two
    scorers, ``deita_score = complexity x quality`` (summed over turns for
    conversations), cosine distance with threshold 0.1 (the paper's
    similarity 0.9) to the rows already kept. The embedding model defaults
    to all-MiniLM-L6-v2, which runs on a laptop; DEITA itself embeds with a
    7B-13B causal LM (pass one with ``embedding_model``,
    ``embedding_backend="vllm"`` or ``"transformers"``, ``pooling="last"``
    and ``conversation_template="vicuna_v1.1"``).

    Parameters
    ----------
    data_budget : int, float or None, default=None
        Rows to keep (see :class:`~skdeita.DeitaSelector`).
    complexity_model, quality_model : str or path-like
        The scorers: hub names or local directories.
    embedding_model : str or path-like, default="sentence-transformers/all-MiniLM-L6-v2"
        The model that embeds each row.
    instruction_col, response_col : str
        Text columns of single-turn rows.
    messages_col : str or None, default=None
        Column of conversations instead (ShareGPT or OpenAI messages): each
        user turn is scored on its own and the conversation is embedded as
        one text rendered with ``conversation_template``.
    text_template : str, default="{instruction}\\n\\n{response}"
        How a single-turn row is turned into the text to embed.
    conversation_template : {"plain", "vicuna_v1.1"}, default="plain"
        How a conversation is turned into the text to embed.
    diversity_threshold, distance_metric, neighbors, output, embedding_col, reference
        Passed to :class:`~skdeita.DeitaSelector`.
    device : str or None, default=None
        Device of the three models (None: CUDA when available).
    dtype : {"float32", "float16", "bfloat16"} or None, default=None
        Weights' dtype of the two scorers and the embedder. None picks it for
        the device when the pipeline is built: ``"bfloat16"`` on CUDA (half
        the memory of float32, a 13B scorer in about 26 GB instead of 52 GB,
        with float32's exponent range, so no overflow as in float16),
        ``"float32"`` on a CPU or MPS (what DEITA loads; most CPUs have no
        fast bfloat16). On the test models bfloat16 moves a score by up to
        0.08 on the 1-6 scale (:doc:`/scoring`); pass ``"float32"`` for
        DEITA's exact numbers on a GPU.
    scorer_batch_size : int, default=8
        Prompts per forward pass of the scorers.
    cache : str, path, joblib.Memory or None, default=None
        Where scores and embeddings are kept on disk, so that a grid search
        over selection parameters scores and embeds each row once.
    show_progress_bar : bool or None, default=None
        tqdm bars (None: only on a terminal).
    backend : {"transformers", "vllm"}, default="transformers"
        Where the two scorers run (:doc:`/scoring`): vLLM gives the same
        scores at vLLM's speed on a GPU.
    backend_kwargs : dict or None, default=None
        Settings of ``vllm.LLM`` for the scorers (and a vLLM embedder).
    embedding_backend : {"sentence-transformers", "transformers", "vllm"}, \
default="sentence-transformers"
        The embedder's backend (see :class:`~skdeita.EmbeddingTransformer`).
    pooling : {"mean", "cls", "last"}, default="mean"
        The embedder's pooling with the transformers or vLLM backend.

    Returns
    -------
    pipeline : DeitaPipeline
        An unfitted :class:`~sklearn.pipeline.Pipeline` that checks every
        step's parameters and columns before running any;
        ``fit_transform(pool)`` returns the curated rows.

    See Also
    --------
    skdeita.ComplexityScorer, skdeita.QualityScorer, skdeita.EmbeddingTransformer,
    skdeita.DeitaSelector : The steps.

    Examples
    --------
    >>> from skdeita import make_deita_pipeline
    >>> pipe = make_deita_pipeline(6000)
    >>> [name for name, _ in pipe.steps]
    ['complexity', 'quality', 'embedding', 'selection']
    """
    dtype = default_dtype(device) if dtype is None else dtype
    common = dict(device=device, dtype=dtype, cache=cache, show_progress_bar=show_progress_bar)
    scorer_backend = dict(backend=backend, backend_kwargs=backend_kwargs)
    embedder = dict(backend=embedding_backend, pooling=pooling)
    if embedding_backend == "vllm":
        embedder["backend_kwargs"] = backend_kwargs
    scorer_cols = dict(instruction_col=instruction_col, messages_col=messages_col)
    if messages_col is None:
        embed_text = dict(template=text_template)
    else:
        embed_text = dict(messages_col=messages_col, conversation_template=conversation_template)
    return DeitaPipeline(
        [
            (
                "complexity",
                ComplexityScorer(
                    complexity_model,
                    batch_size=scorer_batch_size,
                    **scorer_cols,
                    **scorer_backend,
                    **common,
                ),
            ),
            (
                "quality",
                QualityScorer(
                    quality_model,
                    response_col=response_col,
                    batch_size=scorer_batch_size,
                    **scorer_cols,
                    **scorer_backend,
                    **common,
                ),
            ),
            (
                "embedding",
                EmbeddingTransformer(
                    embedding_model, output_col=embedding_col, **embed_text, **embedder, **common
                ),
            ),
            (
                "selection",
                DeitaSelector(
                    data_budget,
                    diversity_threshold=diversity_threshold,
                    distance_metric=distance_metric,
                    neighbors=neighbors,
                    output=output,
                    embedding_col=embedding_col,
                    reference=reference,
                    show_progress_bar=show_progress_bar,
                ),
            ),
        ]
    )
