"""What ``select``, ``curate`` and ``rank`` do around their steps, in one place:
check everything, announce the cache, run, write the output, then the
manifest (and the report page when asked) beside it."""

from __future__ import annotations

import time

from ..base import BaseModelTransformer
from ..embedding import EmbeddingTransformer
from ._cache import announce, cache_dir, check_cache_dir, report_use
from ._common import (
    check_paths,
    check_pipeline,
    dask_client,
    frame_meta,
    read_input,
    run_pipeline,
    text_fields,
    warn_if_embedding_col_mistyped,
    write_output,
)
from ._io import CLIError
from ._report import check_report_path, finish_run


def run_command(args, make_steps, list_columns: tuple[str, ...], *, before_run=None):
    """Run a command's steps from ``args.input`` to ``args.output``.

    ``make_steps(args, columns, cache)`` builds the steps (the model steps
    keep their results in ``cache``); ``before_run(args, steps)`` may adjust
    them once checked. Returns ``(frame, out, steps)``.
    """
    check_paths(args)
    report_path = getattr(args, "report", None)
    if report_path is not None:
        check_report_path(report_path, args.input)
    cache = cache_dir(args)
    with dask_client(getattr(args, "cluster", None), getattr(args, "device", None)) as client:
        if report_path is not None and client is not None:
            raise CLIError(
                "--report with --cluster: the report page needs every row in memory; write "
                "the run with --annotate, then `skdeita report OUTPUT -o REPORT.html`"
            )
        frame = read_input(args, list_columns, client)
        steps = make_steps(args, frame.columns, cache)
        if report_path is not None:
            steps[-1].set_params(output="annotate")  # every row's outcome, for the page
        check_pipeline(steps, frame_meta(frame), args.input, text_fields(args))
        if any(isinstance(step, EmbeddingTransformer) for step in steps):
            warn_if_embedding_col_mistyped(args, frame.columns)
        if any(isinstance(step, BaseModelTransformer) for step in steps):
            check_cache_dir(cache)
            announce(cache)
        else:
            cache = None
        if before_run is not None:
            before_run(args, steps)
        started = time.time()
        out = run_pipeline(steps, frame)
        written = out
        if report_path is not None and not args.annotate:
            written = kept_rows(out, steps[-1])
        write_output(written, args.output)
        report_use(steps)
        finish_run(
            steps,
            frame,
            written,
            input_path=args.input,
            output_path=args.output,
            started=started,
            report_path=report_path,
            report_frame=out,
        )
    return frame, written, steps


def kept_rows(annotated, selector):
    """The subset output from the annotated one: kept rows in selection order,
    without the columns only ``output="annotate"`` adds."""
    only_annotate = set(selector._added_columns()) - set(
        selector.set_params(output="subset")._added_columns()
    )
    selector.set_params(output="annotate")
    kept = annotated[annotated["deita_selected"]].sort_values("deita_rank", kind="stable")
    return kept.drop(columns=[c for c in annotated.columns if c in only_annotate])
