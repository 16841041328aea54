"""``skdeita select``: embed (when needed) and select a diverse subset."""

from __future__ import annotations

from ..utils._conversations import CONVERSATION_TEMPLATES
from ._cache import add_cache_arguments, cache_dir
from ._common import (
    add_cluster_argument,
    budget_arg,
    check_pipeline,
    column_arg,
    embedding_template,
    progress,
    run_pipeline,
    template_arg,
    text_fields,
    threshold_arg,
)
from ._help import SELECT_DESCRIPTION
from ._run import run_command


def add_selection_arguments(parser) -> None:
    """The options of the selection step and of the text it embeds (shared with ``curate``)."""
    parser.add_argument("input", help="JSONL, CSV or Parquet file, or a Parquet folder or glob")
    parser.add_argument(
        "-o", "--output", required=True, help="output file (same formats), or a new Parquet folder"
    )
    parser.add_argument(
        "--budget",
        type=budget_arg,
        required=True,
        help="rows to keep: a number of rows, or a fraction of the input such as 0.1",
    )
    parser.add_argument(
        "--threshold",
        type=threshold_arg,
        default=0.1,
        help="diversity: a row is kept only at least this distance from every row kept "
        "before it (cosine 0.1 = similarity 0.9, DEITA's)",
    )
    parser.add_argument(
        "--neighbors",
        choices=["selected", "dataset"],
        default="selected",
        help="distance to the rows kept before (DEITA's rule), or to the nearest other "
        "row of the whole input (distilabel's)",
    )
    parser.add_argument("--metric", default="cosine", help="distance metric")
    parser.add_argument(
        "--embedding-col",
        type=column_arg,
        default="embedding",
        help="column of embeddings: used as is when the input has it, else written there",
    )
    parser.add_argument(
        "--instruction-col",
        type=column_arg,
        default="instruction",
        help="column of instructions (part of the text embedded; curate scores it too)",
    )
    parser.add_argument(
        "--response-col",
        type=column_arg,
        default="response",
        help="column of responses (part of the text embedded; curate scores it too)",
    )
    parser.add_argument(
        "--text-template",
        type=template_arg,
        default=None,
        help="the text to embed, from any columns, e.g. '{instruction}: {response}' "
        "(default: the --instruction-col and --response-col columns, a blank line between)",
    )
    parser.add_argument(
        "--messages-col",
        type=column_arg,
        default=None,
        help="column of conversations (ShareGPT or OpenAI messages) instead of text columns "
        "(default: none, the rows are single-turn)",
    )
    parser.add_argument(
        "--conversation-template",
        choices=sorted(CONVERSATION_TEMPLATES),
        default="plain",
        help="how a conversation becomes the text to embed",
    )
    parser.add_argument(
        "--annotate", action="store_true", help="keep every row, marking the kept ones"
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar, model loading included (default: bars on a terminal only)",
    )


def add_parser(sub) -> None:
    sel = sub.add_parser(
        "select",
        help="embed (if needed) and select a diverse subset",
        description=SELECT_DESCRIPTION,
    )
    add_selection_arguments(sel)
    sel.add_argument(
        "--model",
        default=None,
        help="embedding model, a hub name or a local folder (default: "
        "sentence-transformers/all-MiniLM-L6-v2, installed with skdeita[embeddings])",
    )
    sel.add_argument(
        "--instruction-score-col",
        type=column_arg,
        default="evol_instruction_score",
        help="column of complexity scores ('' for none)",
    )
    sel.add_argument(
        "--response-score-col",
        type=column_arg,
        default="evol_response_score",
        help="column of quality scores ('' for none)",
    )
    sel.add_argument(
        "--missing-scores",
        choices=["raise", "drop"],
        default="raise",
        help="rows without a score: an error, or left out of the selection with a warning",
    )
    sel.add_argument(
        "--reference",
        default=None,
        metavar="CURATED",
        help="rows already curated: kept rows must be diverse against them too (its "
        "embedding column, or its texts embedded with the same model); not in the output "
        "(default: none)",
    )
    add_cache_arguments(sel)
    add_report_argument(sel)
    add_cluster_argument(sel)
    sel.set_defaults(run=run)


def add_report_argument(parser) -> None:
    """``--report HTML``: also write the report page of the run."""
    parser.add_argument(
        "--report",
        metavar="HTML",
        default=None,
        help="also write a self-contained HTML page showing why each row was kept or dropped "
        "(default: none)",
    )


def selection_steps(args, columns, cache=None, *, model=None) -> list:
    """The embedder (when the input has no embedding column) and the selector."""
    from .. import DeitaSelector, EmbeddingTransformer

    selector = DeitaSelector(
        args.budget,
        diversity_threshold=args.threshold,
        neighbors=args.neighbors,
        distance_metric=args.metric,
        embedding_col=args.embedding_col,
        instruction_score_col=args.instruction_score_col,
        response_score_col=args.response_score_col,
        missing_scores=args.missing_scores,
        output="annotate" if args.annotate else "subset",
        show_progress_bar=progress(args),
    )
    if args.embedding_col in columns:
        return [selector]
    kwargs = {"model": model} if model else {}
    if args.messages_col is None:
        kwargs["template"] = embedding_template(args)
    else:
        kwargs["messages_col"] = args.messages_col
        kwargs["conversation_template"] = args.conversation_template
    embedder = EmbeddingTransformer(
        output_col=args.embedding_col,
        cache=cache,
        show_progress_bar=progress(args),
        **kwargs,
    )
    return [embedder, selector]


def run(args) -> int:
    reference = []

    def steps_of(args, columns, cache):
        return selection_steps(args, columns, cache, model=args.model)

    def before_run(args, steps):
        reference.append(attach_reference(args, steps))

    frame, out, steps = run_command(args, steps_of, list_columns(args), before_run=before_run)
    report(args, frame, out, steps[-1])
    if reference and reference[0] is not None:
        print(f"reference rows: {reference[0]} (not in the output, not counted in the budget)")
    return 0


def attach_reference(args, steps) -> int | None:
    """``--reference CURATED``: give the selector the curated rows' embeddings
    (its embedding column, or its texts embedded by the same embedder)."""
    if args.reference is None:
        return None
    from sklearn.base import clone

    from ._io import read_table

    curated = read_table(args.reference, list_columns=list_columns(args))
    if args.embedding_col not in curated.columns:
        embedder = clone(selection_steps(args, (), cache_dir(args), model=args.model)[0])
        check_pipeline([embedder], curated, f"--reference {args.reference}", text_fields(args))
        curated = run_pipeline([embedder], curated)
    steps[-1].set_params(reference=curated[[args.embedding_col]])
    return len(curated)


def list_columns(args) -> tuple[str, ...]:
    """Columns whose CSV cells hold JSON lists (embeddings, conversations)."""
    return tuple(c for c in (args.embedding_col, args.messages_col) if c)


def report(args, frame, out, selector) -> None:
    kept = selector.n_selected_
    print(
        f"rows in: {len(frame)}  rows kept: {kept}  budget: {selector.budget_} "
        f"({'reached' if selector.budget_reached_ else 'NOT reached'})  threshold: "
        f"{args.threshold}  neighbors: {args.neighbors}  ->  {args.output}"
    )
