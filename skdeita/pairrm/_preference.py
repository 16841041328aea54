"""Ranked rows to training data: best-first order, preference pairs, best answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..utils._validation import check_columns, first_labels
from ..utils._warnings import warn_user


def order_by_ranks(candidates: list, ranks) -> list:
    """Candidates best first: a stable argsort of the ranks.

    distilabel's ``take_along_axis(candidates, ranks - 1)`` applies the inverse
    permutation instead: ranks ``[2, 3, 1]`` of ``a, b, c`` must give
    ``c, a, b``, not ``b, c, a``; tied ranks keep input order.
    """
    return [candidates[i] for i in np.argsort(np.asarray(ranks), kind="stable")]


def preference_pairs(
    ranked: pd.DataFrame,
    *,
    input_col: str = "input",
    ranked_col: str = "ranked_candidates",
    ranks_col: str = "ranks",
) -> pd.DataFrame:
    """Turn ranked rows into ``prompt``/``chosen``/``rejected`` preference data.

    The best-ranked candidate is chosen and the worst rejected (the layout
    DPO trainers read). Rows whose candidates all tie, or with one candidate,
    give no pair; a warning counts them.

    Parameters
    ----------
    ranked : DataFrame
        Output of :meth:`PairRMRanker.transform`.
    input_col, ranked_col, ranks_col : str
        Column names in ``ranked``.

    Returns
    -------
    pairs : DataFrame
        Columns ``prompt``, ``chosen``, ``rejected``, ``chosen_rank``,
        ``rejected_rank``; index labels of the source rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import preference_pairs
    >>> ranked = pd.DataFrame({"input": ["Hi"], "ranks": [[2, 1, 3]],
    ...                        "ranked_candidates": [["good", "fine", "bad"]]})
    >>> preference_pairs(ranked)[["prompt", "chosen", "rejected"]]
      prompt chosen rejected
    0     Hi   good      bad
    """
    check_columns(
        ranked, {"input_col": input_col, "ranked_col": ranked_col, "ranks_col": ranks_col}
    )
    records, labels, dropped = [], [], 0
    for label, prompt, cands, ranks in zip(
        ranked.index, ranked[input_col], ranked[ranked_col], ranked[ranks_col], strict=True
    ):
        if cands is None or ranks is None or len(cands) < 2 or min(ranks) == max(ranks):
            dropped += 1
            continue
        records.append(
            {
                "prompt": prompt,
                "chosen": cands[0],
                "rejected": cands[-1],
                "chosen_rank": min(ranks),
                "rejected_rank": max(ranks),
            }
        )
        labels.append(label)
    if dropped:
        warn_user(
            f"{dropped} rows give no preference pair (one candidate, all tied, or unranked).",
            UserWarning,
        )
    columns = ["prompt", "chosen", "rejected", "chosen_rank", "rejected_rank"]
    return pd.DataFrame(records, index=pd.Index(labels, name=ranked.index.name), columns=columns)


def best_candidate(
    ranked: pd.DataFrame,
    *,
    input_col: str = "input",
    ranked_col: str = "ranked_candidates",
    scores_col: str = "scores",
    ranks_col: str = "ranks",
    instruction_col: str = "instruction",
    response_col: str = "response",
    quality_col: str = "pairrm_quality",
) -> pd.DataFrame:
    """One instruction/response row per ranked row: the best candidate, scored.

    Feeds selection when rows have no LLM quality score: ``pairrm_quality``
    is ``1 + 5 * sigmoid(best score)``, on DEITA's 1-6 scale. PairRM scores
    compare candidates *of the same instruction*: across rows they say how
    clearly the best candidate beats the others, not how good it is in
    absolute terms, and a row with a single candidate scores 3.5.

    Parameters
    ----------
    ranked : DataFrame
        Output of ``PairRMRanker(return_scores=True).transform``.
    input_col, ranked_col, scores_col, ranks_col : str
        Columns of ``ranked``.
    instruction_col, response_col, quality_col : str
        Names of the output columns.

    Returns
    -------
    frame : DataFrame
        ``ranked`` without the candidate columns, plus the three new columns;
        unranked rows are dropped with a warning.

    Examples
    --------
    >>> import pandas as pd
    >>> from skdeita import best_candidate
    >>> ranked = pd.DataFrame({"input": ["Hi"], "ranks": [[2, 1]],
    ...                        "ranked_candidates": [["good", "fine"]],
    ...                        "scores": [[-1.0, 1.0]]})
    >>> best_candidate(ranked)[["instruction", "response", "pairrm_quality"]].round(2)
      instruction response  pairrm_quality
    0          Hi     good            4.66
    """
    check_columns(
        ranked,
        {
            "input_col": input_col,
            "ranked_col": ranked_col,
            "scores_col": scores_col,
            "ranks_col": ranks_col,
        },
    )
    done = ranked[ranked_col].map(lambda c: c is not None and len(c) > 0).to_numpy(dtype=bool)
    if not done.all():
        warn_user(
            f"{int((~done).sum())} unranked rows dropped: {first_labels(ranked.index, ~done)}.",
            UserWarning,
        )
    rows = ranked[done]
    best = [float(max(s)) for s in rows[scores_col]]
    out = rows.drop(columns=[ranked_col, scores_col, ranks_col])
    out[instruction_col] = rows[input_col]
    out[response_col] = [c[0] for c in rows[ranked_col]]
    out[quality_col] = 1.0 + 5.0 / (1.0 + np.exp(-np.asarray(best, dtype=float)))
    return out
