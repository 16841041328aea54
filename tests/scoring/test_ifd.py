"""IFDScorer against a plain one-row loop written like Superfiltering's code.

The loop below follows tianyi-lab/Superfiltering ``code_ifd/data_analysis.py``
(``get_perplexity_and_embedding_whole_text``, ``..._part_text`` and ``main``)
and ``put_analysis_to_data.py`` (the ratio), with transformers and torch
only: no skdeita code. The model is a tiny random GPT-2 with a tokenizer
trained at test time (context 160, not GPT-2's 1024), its final layer norm
scaled up so that its next-token distributions are sharp: IFDs then spread
from about 0.4 to 4, and an off-by-one token moves them far beyond 1e-4.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector, IFDScorer
from skdeita.exceptions import ScoringError, ScoringFailedWarning, TruncationWarning

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CONTEXT = 160
NO_MODEL = "/nonexistent/ifd-model"  # any load would fail: proves no load happens
SUPERFILTERING = {"prompt_no_input": "{instruction}\n", "prompt_input": "{instruction}\n{input}\n"}
ALPACA = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}
WORDS = (
    "how do I sort a list in Python ? use sorted ( xs ) or xs.sort () for the sea and wind "
    "at night write short poem explain photosynthesis to ten year old child give three tips "
    "good sleep calm morning capital of France is Paris bread needs flour water salt 1 2 3 "
    "4 5 6 score quality response question"
).split()


# -- the plain loop ----------------------------------------------------------------


def whole_text_ppl(tokenizer, model, text, max_length):
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        outputs = model(input_ids, labels=input_ids.contiguous())
    return torch.exp(outputs.loss).item()


def part_text_ppl(tokenizer, model, text, target_span, max_length, shift=0):
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
    start_index = text.rfind(target_span)
    start_token = len(tokenizer.encode(text[:start_index])) + shift
    labels = input_ids.clone()
    labels[0, :start_token] = -100
    with torch.no_grad():
        outputs = model(input_ids, labels=labels)
    return torch.exp(outputs.loss).item()


def superfiltering_row(
    tokenizer, model, instruction, output, input_="", max_length=1024, prompts=None, shift=0
):
    """(ppl conditioned, ppl alone, IFD) of one row, as Superfiltering computes them."""
    prompts = prompts or SUPERFILTERING
    if input_ == "":
        prompt = prompts["prompt_no_input"].format_map({"instruction": instruction})
    else:
        prompt = prompts["prompt_input"].format_map({"instruction": instruction, "input": input_})
    whole_text = prompt + output
    instruct_len = tokenizer.encode(
        prompt, return_tensors="pt", truncation=True, max_length=max_length
    ).shape[1]
    ppl_alone = whole_text_ppl(tokenizer, model, output, max_length - instruct_len + 1)
    ppl_condition = part_text_ppl(tokenizer, model, whole_text, output, max_length, shift)
    return ppl_condition, ppl_alone, ppl_condition / ppl_alone


def loop_ifd(lm, frame, max_length=CONTEXT, prompts=None, input_col=None, shift=0):
    tokenizer, model = lm
    rows = []
    for _, row in frame.iterrows():
        input_ = row[input_col] if input_col else ""
        rows.append(
            superfiltering_row(
                tokenizer,
                model,
                row["instruction"],
                row["response"],
                input_ if isinstance(input_, str) else "",
                max_length,
                prompts,
                shift,
            )
        )
    return pd.DataFrame(rows, columns=["ppl_c", "ppl_a", "ifd"], index=frame.index)


# -- fixtures ------------------------------------------------------------------------


def sharp_tiny_gpt2(directory, n_positions):
    from skdeita._testing import make_tiny_gpt2

    path = make_tiny_gpt2(directory, n_positions=n_positions)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(30.0)  # sharp next-token distributions
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def gpt2_path(tmp_path_factory):
    return sharp_tiny_gpt2(tmp_path_factory.mktemp("ifd") / "gpt2", CONTEXT)


@pytest.fixture(scope="module")
def wide_gpt2_path(tmp_path_factory):
    """Room for the Alpaca template (about 150 tokens with this tiny vocabulary)."""
    return sharp_tiny_gpt2(tmp_path_factory.mktemp("ifd") / "gpt2_wide", 320)


@pytest.fixture(scope="module")
def lm(gpt2_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(gpt2_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(gpt2_path).eval()
    return tokenizer, model


def words(rng, lo, hi):
    return " ".join(rng.choice(WORDS, int(rng.integers(lo, hi))))


@pytest.fixture(scope="module")
def pool():
    """Rows of many lengths: some past the context, duplicates, a shared response."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "instruction": [words(rng, 1, 25) for _ in range(26)],
            "response": [words(rng, 3, 110) for _ in range(26)],
        },
        index=[f"r{i}" for i in range(26)],
    )
    frame.loc["dup"] = frame.loc["r3"]
    frame.loc["same_response"] = [words(rng, 2, 8), frame.loc["r5", "response"]]
    return frame


@pytest.fixture(scope="module")
def expected(lm, pool):
    return loop_ifd(lm, pool)


def scorer(path, **kw):
    return IFDScorer(path, show_progress_bar=False, **kw)


def rel_err(got, want):
    return float(np.max(np.abs(np.asarray(got, float) / np.asarray(want, float) - 1.0)))


# -- exactness -----------------------------------------------------------------------


def test_the_model_is_sharp_enough_to_catch_an_off_by_one(lm, pool, expected):
    assert expected["ifd"].max() / expected["ifd"].min() > 3
    shifted = loop_ifd(lm, pool.head(8), shift=1)
    assert rel_err(shifted["ifd"], expected["ifd"].head(8)) > 1e-3


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_equals_superfiltering_loop_at_any_batch_size(gpt2_path, pool, expected, batch_size):
    with pytest.warns(TruncationWarning, match="cut as Superfiltering cuts them"):
        out = scorer(gpt2_path, batch_size=batch_size).fit_transform(pool)
    assert out.index.equals(pool.index)
    assert rel_err(out["ifd_score"], expected["ifd"]) <= 1e-4
    assert out.loc["dup", "ifd_score"] == out.loc["r3", "ifd_score"]


def test_row_order_and_neighbours_do_not_change_a_score(gpt2_path, pool, expected):
    shuffled = pool.sample(frac=1.0, random_state=3)
    with pytest.warns(TruncationWarning):
        out = scorer(gpt2_path, batch_size=3).fit_transform(shuffled)
    assert out.index.equals(shuffled.index)
    assert rel_err(out["ifd_score"], expected.loc[shuffled.index, "ifd"]) <= 1e-4


@pytest.mark.filterwarnings("ignore::skdeita.exceptions.TruncationWarning")
def test_models_without_a_separable_output_layer_use_the_full_forward_pass(
    gpt2_path, pool, expected, monkeypatch
):
    # A model that scales or caps its logits after the output layer is scored
    # through its own forward pass (all logits); the result is the same.
    import skdeita.scoring._perplexity as perplexity

    monkeypatch.setattr(perplexity, "split_head", lambda lm: None)
    out = scorer(gpt2_path, batch_size=3).fit_transform(pool)
    assert rel_err(out["ifd_score"], expected["ifd"]) <= 1e-4


def test_perplexity_columns_equal_the_loops(gpt2_path, pool, expected):
    est = scorer(gpt2_path, batch_size=4, perplexity_cols=("ppl_A_condition", "ppl_A_direct"))
    with pytest.warns(TruncationWarning):
        out = est.fit_transform(pool)
    assert rel_err(out["ppl_A_condition"], expected["ppl_c"]) <= 1e-4
    assert rel_err(out["ppl_A_direct"], expected["ppl_a"]) <= 1e-4
    assert list(est.get_feature_names_out())[-3:] == [
        "ifd_score",
        "ppl_A_condition",
        "ppl_A_direct",
    ]


def test_default_max_length_is_capped_at_the_model_context(gpt2_path, lm, pool, expected):
    tokenizer, _ = lm
    texts = pool["instruction"] + "\n" + pool["response"]
    lengths = [len(tokenizer.encode(t)) for t in texts]
    assert max(lengths) > CONTEXT  # some rows are cut
    est = scorer(gpt2_path)
    assert est.max_length == 1024  # Superfiltering's, GPT-2's context
    with pytest.warns(TruncationWarning) as caught:
        out = est.fit_transform(pool)
    assert est._max_length(est._get_model()) == CONTEXT
    n_cut = sum(n > CONTEXT for n in lengths)
    assert f"{n_cut} rows were longer than max_length={CONTEXT}" in str(caught[0].message)
    assert rel_err(out["ifd_score"], expected["ifd"]) <= 1e-4
    with pytest.warns(TruncationWarning):
        none = scorer(gpt2_path, max_length=None).fit_transform(pool)
    np.testing.assert_array_equal(none["ifd_score"], out["ifd_score"])


def test_a_shorter_max_length_cuts_like_superfiltering(gpt2_path, lm, pool):
    want = loop_ifd(lm, pool, max_length=48)
    # Long prompts fill 48 tokens: no response token is left, NaN in the loop too.
    assert 0 < want["ifd"].isna().sum() < len(pool) - 10
    with pytest.warns(TruncationWarning), pytest.warns(ScoringFailedWarning, match="fills"):
        out = scorer(gpt2_path, max_length=48, batch_size=5, on_error="nan").fit_transform(pool)
    assert out["ifd_score"].isna().equals(want["ifd"].isna())
    ok = want["ifd"].notna()
    assert rel_err(out.loc[ok, "ifd_score"], want.loc[ok, "ifd"]) <= 1e-4


def test_rows_within_the_limit_warn_nothing(gpt2_path, lm, pool, expected):
    short = pool[[len(r.split()) < 30 for r in pool.response]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = scorer(gpt2_path).fit_transform(short)
    assert rel_err(out["ifd_score"], expected.loc[short.index, "ifd"]) <= 1e-4


@pytest.mark.parametrize("template", [None, "alpaca"])
def test_input_column_uses_the_template_with_input(gpt2_path, wide_gpt2_path, template):
    path, context = (wide_gpt2_path, 320) if template == "alpaca" else (gpt2_path, CONTEXT)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "instruction": [words(rng, 2, 10) for _ in range(8)],
            "input": ["", words(rng, 2, 9), None, words(rng, 1, 5), "", np.nan, "x y", ""],
            "response": [words(rng, 3, 30) for _ in range(8)],
        }
    )
    prompts = ALPACA if template == "alpaca" else SUPERFILTERING
    want = loop_ifd((tokenizer, model), frame, context, prompts=prompts, input_col="input")
    out = scorer(path, input_col="input", prompt_template=template, batch_size=3)
    out = out.fit_transform(frame)
    assert rel_err(out["ifd_score"], want["ifd"]) <= 1e-4
    # The input matters: without it the rows with an input score differently.
    plain = scorer(path, prompt_template=template).fit_transform(frame)
    has_input = frame["input"].map(lambda v: isinstance(v, str) and v != "").to_numpy()
    change = np.abs(out["ifd_score"] / plain["ifd_score"] - 1).to_numpy()
    assert (change[has_input] > 1e-3).all() and (change[~has_input] <= 1e-4).all()


def test_custom_template_pair(gpt2_path, lm):
    prompts = {
        "prompt_no_input": "Q: {instruction}\nA:",
        "prompt_input": "Q: {instruction} {input}\nA:",
    }
    frame = pd.DataFrame(
        {
            "instruction": ["sort a list", "write a poem"],
            "in": ["", "the sea"],
            "response": ["use sorted ( xs )", "the wind at night"],
        }
    )
    want = loop_ifd(lm, frame.rename(columns={"in": "input"}), prompts=prompts, input_col="input")
    est = scorer(
        gpt2_path,
        input_col="in",
        prompt_template=(prompts["prompt_no_input"], prompts["prompt_input"]),
    )
    assert rel_err(est.fit_transform(frame)["ifd_score"], want["ifd"]) <= 1e-4


# -- rows without an IFD -------------------------------------------------------------


def test_empty_response_is_an_error_before_loading(pool):
    frame = pool.head(4).copy()
    frame.loc["r1", "response"] = ""
    with pytest.raises(ValueError, match=r"empty responses at rows \['r1'\].*on_error='nan'"):
        scorer(NO_MODEL).fit(frame)


@pytest.mark.filterwarnings("ignore::skdeita.exceptions.TruncationWarning")
def test_empty_response_is_nan_with_on_error_nan(gpt2_path, pool, expected):
    frame = pool.head(6).copy()
    frame.loc["r2", "response"] = ""
    with pytest.warns(ScoringFailedWarning, match=r"1 rows could not be scored.*\['r2'\]"):
        out = scorer(gpt2_path, on_error="nan", batch_size=2).fit_transform(frame)
    assert np.isnan(out.loc["r2", "ifd_score"])
    rest = out.index != "r2"
    assert rel_err(out.loc[rest, "ifd_score"], expected.loc[out.index[rest], "ifd"]) <= 1e-4


def one_token_word(tokenizer):
    return next(w for w in WORDS if len(tokenizer.encode(w)) == 1 and len(w) > 1)


def test_rows_with_nothing_to_score_are_never_a_made_up_value(gpt2_path, lm, pool):
    tokenizer, _ = lm
    rng = np.random.default_rng(9)
    frame = pool.head(3).copy()
    frame.loc["one_token"] = ["sort a list", one_token_word(tokenizer)]
    frame.loc["prompt_fills"] = [words(rng, 200, 201), "use sorted ( xs ) please"]
    with pytest.raises(ScoringError, match="one_token") as info:
        scorer(gpt2_path).fit_transform(frame)
    assert "predicts no token" in str(info.value)
    with pytest.warns(ScoringFailedWarning, match="2 rows could not be scored"):
        with pytest.warns(TruncationWarning):
            out = scorer(gpt2_path, on_error="nan").fit_transform(frame)
    assert out.loc[["one_token", "prompt_fills"], "ifd_score"].isna().all()
    assert out["ifd_score"].notna().sum() == 3
    # Superfiltering's own loop gives NaN there too (a mean over no token).
    want = loop_ifd(lm, frame.loc[["one_token", "prompt_fills"]])
    assert want["ifd"].isna().all()


# -- bad input: errors before any model loads -----------------------------------------


@pytest.mark.parametrize(
    ("params", "change", "error", "match"),
    [
        ({}, lambda f: f.drop(columns="response"), ValueError, "'response' .*response_col"),
        ({}, lambda f: f.assign(instruction=[None, "a b"]), ValueError, "missing text"),
        ({}, lambda f: f.assign(response=[3, "a b"]), TypeError, "must hold strings"),
        ({"prompt_template": "Q: {question}"}, None, ValueError, "may only use"),
        ({"prompt_template": "no field"}, None, ValueError, r"needs an \{instruction\}"),
        ({"prompt_template": "{instruction} {input}"}, None, ValueError, "input_col is None"),
        ({"input_col": "input", "prompt_template": "{instruction}"}, None, ValueError, "ignored"),
        ({"prompt_template": ("{instruction} {input}", "{input}")}, None, ValueError, "must not"),
        ({"prompt_template": "{instruction"}, None, ValueError, "not a valid format string"),
        ({"prompt_template": 3}, None, Exception, "prompt_template"),
        ({"perplexity_cols": ("a",)}, None, ValueError, "two column names"),
        ({"perplexity_cols": ("ifd_score", "b")}, None, ValueError, "three different"),
        ({"input_col": "input"}, None, ValueError, "'input' .*input_col"),
        ({"batch_size": 0}, None, ValueError, "batch_size"),
    ],
)
def test_bad_input_is_an_error_before_the_model_loads(params, change, error, match):
    frame = pd.DataFrame({"instruction": ["sort a list", "poem"], "response": ["a b", "c d"]})
    if change is not None:
        frame = change(frame)
    with pytest.raises(error, match=match):
        scorer(NO_MODEL, **params).fit(frame)


def test_transform_checks_before_loading():
    good = pd.DataFrame({"instruction": ["a"], "response": ["b c"]})
    est = scorer(NO_MODEL).fit(good)  # fit loads nothing
    with pytest.raises(TypeError, match="must hold strings"):
        est.transform(good.assign(response=[1.5]))
    assert getattr(est, "_model", None) is None


# -- estimator plumbing --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::skdeita.exceptions.TruncationWarning")
def test_pickle_leaves_the_weights_out_and_scores_the_same(gpt2_path, pool):
    est = scorer(gpt2_path, batch_size=4)
    rows = pool.head(6)
    first = est.fit_transform(rows)
    blob = pickle.dumps(est)
    assert len(blob) < 20_000
    back = pickle.loads(blob)
    assert "_pinned_model" not in vars(back)  # it uses this process's loaded model
    pd.testing.assert_frame_equal(back.transform(rows), first)


@pytest.mark.filterwarnings("ignore::skdeita.exceptions.TruncationWarning")
def test_cache_returns_the_same_scores(gpt2_path, pool, tmp_path):
    rows = pool.head(8)
    cols = ("pc", "pa")
    first = scorer(gpt2_path, cache=tmp_path, perplexity_cols=cols).fit_transform(rows)
    assert any(tmp_path.rglob("*.rec"))
    again = scorer(gpt2_path, cache=tmp_path, perplexity_cols=cols).fit_transform(rows)
    pd.testing.assert_frame_equal(first, again)
    # Another max_length is another cache entry, not a stale hit.
    other = scorer(gpt2_path, cache=tmp_path, max_length=100).fit_transform(rows)
    assert (other["ifd_score"] != first["ifd_score"]).any()


# -- Superfiltering's recipe with DeitaSelector ---------------------------------------


@pytest.fixture(scope="module")
def scored(gpt2_path, pool):
    rng = np.random.default_rng(2)
    with pytest.warns(TruncationWarning):
        out = scorer(gpt2_path).fit_transform(pool)
    out["embedding"] = list(rng.normal(size=(len(out), 4)))
    out["evol_instruction_score"] = rng.uniform(1, 6, len(out)).round(1)
    return out


def test_ifd_below_one_then_highest_ifd_equals_a_pandas_filter_and_sort(scored):
    assert (scored["ifd_score"] >= 1).any() and (scored["ifd_score"] < 1).any()
    budget = 5
    want = scored[scored["ifd_score"] < 1].sort_values("ifd_score", ascending=False, kind="stable")
    selector = DeitaSelector(
        budget, diversity_threshold=0.0, instruction_score_col=None, response_score_col="ifd_score"
    )
    got = selector.fit_transform(scored[scored["ifd_score"] < 1])
    assert got.index.tolist() == want.index[:budget].tolist()
    assert (got["deita_score"] == got["ifd_score"]).all()


def test_a_combination_of_ifd_and_complexity_equals_a_pandas_sort(scored):
    kept = scored[scored["ifd_score"] < 1]
    product = kept["evol_instruction_score"] * kept["ifd_score"]
    want = product.sort_values(ascending=False, kind="stable").index[:4]
    selector = DeitaSelector(4, diversity_threshold=0.0, response_score_col="ifd_score")
    assert selector.fit_transform(kept).index.tolist() == want.tolist()
