"""``--help`` pages: every option's default, and the columns each command reads."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (their column lists keep their lines); an
    option's help ends with its default, unless the text already states it
    or there is none to state (a flag, a required option, a default of None:
    their help says what leaving them out means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        blank = isinstance(default, str) and default.strip() != default  # shown quoted
        shown = repr(default) if blank else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


SELECT_DESCRIPTION = """\
Keep a small, diverse, high-scoring subset of the input (DEITA's selection):
rows are visited best score first (complexity x quality) and kept when their
embedding is at least --threshold from every row kept before, until --budget
rows are kept.

Columns the input needs:
  scores     evol_instruction_score and evol_response_score, DEITA's complexity
             and quality scores (other names: --instruction-score-col,
             --response-score-col). A pool without scores goes through
             `skdeita curate`, which computes them.
  embedding  an embedding column (--embedding-col), used as is; without one, the
             texts to embed: instruction and response (--instruction-col,
             --response-col, or any columns with --text-template), or
             conversations (--messages-col).
"""

CURATE_DESCRIPTION = """\
DEITA from a raw pool: score every row (or every user turn) with the
complexity and quality scorers, embed it, and select (as `skdeita select`).
Every option, the input's columns and every model are checked before the
first model loads.

Columns the input needs:
  texts      instruction and response (other names: --instruction-col,
             --response-col), or conversations (--messages-col). The text
             embedded is those two columns, a blank line between, unless
             --text-template says otherwise.
  embedding  optional: an embedding column (--embedding-col) is used as is.
"""

RANK_DESCRIPTION = """\
Rank each row's candidate responses with PairRM: adds ranks (1 = best) and
ranked_candidates (best first).

Columns the input needs:
  input       the instruction (--input-col)
  candidates  a list of candidate responses per row (--candidates-col; in a
              CSV, a JSON list)
"""

THRESHOLD_DESCRIPTION = """\
What each diversity threshold would keep and block, in one walk, and which
threshold matches DEITA's and distilabel's defaults.

Columns the input needs: an embedding column (--embedding-col) and the
scores (--instruction-score-col, --response-score-col), as `skdeita select
--annotate` writes them.
"""

REPORT_DESCRIPTION = """\
One self-contained HTML page showing a selection.

Columns the input needs: an annotated output (select or curate --annotate),
or a pool with an embedding column (--embedding-col) and scores
(--instruction-score-col, --response-score-col), selected here first.
"""
