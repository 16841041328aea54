"""Messages in command-line terms.

The estimators speak of parameters (``instruction_score_col``,
``data_budget=500``) and of ``X``; a user of the command line typed options
and a file. :func:`in_cli_terms` rewrites an estimator's message (an error or
a warning) into the options that set those parameters, and
:func:`check_input_columns` checks the columns every step reads against the
file's own columns first, so that a missing column is named by its option,
suggested only from the file, and listed with the file's columns (not those
an earlier step would add).
"""

from __future__ import annotations

import difflib
import re

from ._io import CLIError

# The estimator parameter each option sets. (--embedding-col sets the
# embedder's output column and the selector's input column.)
OPTION_OF = {
    "data_budget": "--budget",
    "diversity_threshold": "--threshold",
    "distance_metric": "--metric",
    "neighbors": "--neighbors",
    "embedding_col": "--embedding-col",
    "output_col": "--embedding-col",
    "template": "--text-template",
    "messages_col": "--messages-col",
    "conversation_template": "--conversation-template",
    "instruction_score_col": "--instruction-score-col",
    "response_score_col": "--response-score-col",
    "instruction_col": "--instruction-col",
    "response_col": "--response-col",
    "input_col": "--input-col",
    "candidates_col": "--candidates-col",
    "batch_size": "--batch-size",
    "backend_kwargs": "--backend-kwargs",
    "missing_scores": "--missing-scores",
    "dtype": "--dtype",
}

# ``<Estimator> model=...`` in a message: the option that names that model,
# per subcommand (select's embedder is --model, curate's --embedding-model).
MODEL_OPTIONS = {
    "select": {"EmbeddingTransformer model": "--model"},
    "curate": {
        "ComplexityScorer model": "--complexity-model",
        "QualityScorer model": "--quality-model",
        "EmbeddingTransformer model": "--embedding-model",
    },
    "rank": {"PairRMRanker model": "--model", "PairRMRanker backbone": "--backbone"},
}

# A bare parameter name is rewritten only where it cannot be a word of prose
# ("template", "neighbors"): names with an underscore, or followed by "=".
_NOT_AROUND = r"(?<![\w'\"/.\\-]){}(?![\w'\"/-])"
_SKLEARN = re.compile(r"The '(\w+)' parameter of \w+ must be")


def in_cli_terms(message: str, command: str | None = None) -> str:
    """``message`` with parameters named by their options and ``X`` as "the input".

    Examples
    --------
    >>> in_cli_terms("kept 120 of 120 rows: fewer than data_budget=500.")
    'kept 120 of 120 rows: fewer than --budget 500.'
    >>> in_cli_terms("Column 'q' (instruction_score_col) is not in X.")
    "Column 'q' (--instruction-score-col) is not in the input."
    """
    text = " ".join(str(message).split())
    for name, option in MODEL_OPTIONS.get(command or "", {}).items():
        text = text.replace(f"{name}=", f"{option} ")

    def sklearn(match: re.Match) -> str:
        option = OPTION_OF.get(match.group(1))
        return f"{option} must be" if option else match.group(0)

    text = _SKLEARN.sub(sklearn, text)
    text = text.replace("must be an instance of 'str'. Got None instead.", "must name a column.")
    for param, option in OPTION_OF.items():
        text = re.sub(r"(?<![\w'\"/.\\-])" + re.escape(param) + "=", option + " ", text)
        if "_" in param:
            text = re.sub(_NOT_AROUND.format(re.escape(param)), option, text)
    text = re.sub(r"\b(in|of|to) X\b", r"\1 the input", text)
    return re.sub(r"^X has\b", "The input has", text)


def did_you_mean(column: str, columns: list[str], option: str | None = None) -> str:
    """A suggestion among ``columns`` (the file's own), or ``""``."""
    close = difflib.get_close_matches(str(column), columns, n=1, cutoff=0.75)
    if not close:
        return ""
    return f" {option}: did you mean {close[0]!r}?" if option else f" Did you mean {close[0]!r}?"


def check_input_columns(steps: list, columns, source: str, fields: dict | None = None) -> None:
    """Every column a step reads is in ``source`` (the file) or added by an earlier step.

    ``fields`` maps a column read as a template field to the option that
    named it (the default embedding text follows ``--instruction-col`` and
    ``--response-col``); other fields are ``--text-template``'s. Raises a
    :class:`CLIError` naming the option, the file and its columns.
    """
    own = [str(c) for c in columns]
    # No scores and no step to compute them: that comes first (nothing else helps).
    added = {c for step in steps[:-1] for c in step._added_columns()}
    reads = steps[-1]._input_columns() if steps else {}
    no_scores = {
        p: c
        for p, c in reads.items()
        if p.endswith("score_col") and c is not None and c not in columns and c not in added
    }
    if no_scores:
        raise CLIError(_missing(steps[-1], no_scores, own, source, fields or {}))
    available = set(columns)
    for step in steps:
        missing = {
            param: col
            for param, col in step._input_columns().items()
            if col is not None and col not in available
        }
        if missing:
            raise CLIError(_missing(step, missing, own, source, fields or {}))
        available.update(step._added_columns())


def _option(param: str, column: str, fields: dict) -> str:
    if param.startswith("template field"):
        return fields.get(column, f"--text-template field {{{column}}}")
    return OPTION_OF.get(param, param)


def _missing(step, missing: dict, own: list[str], source: str, fields: dict) -> str:
    name = type(step).__name__
    listed = f" Its columns: {own}."
    typo = any(did_you_mean(c, own) for c in missing.values())
    scores = {"instruction_score_col", "response_score_col"} & set(missing)
    if name == "DeitaSelector" and scores and not typo:
        named = " or ".join(f"{missing[p]!r} ({OPTION_OF[p]})" for p in sorted(scores))
        return (
            f"{source} has no DEITA scores: no column {named}. `skdeita curate` computes "
            "them (it scores, embeds and selects), or name the columns that hold them with "
            f"--instruction-score-col and --response-score-col.{listed}"
        )
    param, col = next(iter(missing.items()))
    option = _option(param, col, fields)
    if name == "EmbeddingTransformer":
        # The embedder runs only because the embedding column is absent: say both.
        target = step.output_col
        hints = did_you_mean(target, own, "--embedding-col") + did_you_mean(col, own, option)
        return (
            f"{source} has no column {target!r} (--embedding-col), and no column {col!r} "
            f"({option}) to embed its rows from.{hints}{listed}"
        )
    return f"{source} has no column {col!r} ({option}).{did_you_mean(col, own)}{listed}"
