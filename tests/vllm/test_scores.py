"""VLLMCausalLM.first_token_scores equals DEITA's transformers path.

On a tiny float32 Llama whose digit tokens rank far outside the top 20 (a
top-k log-probability list would miss them), under three generation configs:
greedy, a repetition penalty, and sampling (temperature, top-k, top-p, which
mask some digits). The three configs are written in turn to one model folder,
so they share one engine (the engine does not depend on them).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

pytest.importorskip("vllm")
psutil = pytest.importorskip("psutil")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from skdeita._testing import GENERATION_CONFIGS, make_tiny_llama_scorer  # noqa: E402
from skdeita.scoring._base import CausalLM  # noqa: E402
from skdeita.scoring._first_token import first_token_scores  # noqa: E402
from skdeita.scoring._vllm import VLLMCausalLM  # noqa: E402

from .conftest import (  # noqa: E402
    COMPLEXITY_TEMPLATE,
    INSTRUCTIONS,
    TOL,
    deita_first_scores,
    expected_digit,
)

pytestmark = pytest.mark.vllm

VARIANTS = {
    "greedy": {},
    "repetition-penalty": GENERATION_CONFIGS["repetition-penalty"],
    "sampling": GENERATION_CONFIGS["sampling"],
}


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory):
    return make_tiny_llama_scorer(
        tmp_path_factory.mktemp("vllm-scorer"), seed=3, head_dim=64, bury_digits=True
    )


@pytest.fixture(scope="module")
def cases(scorer_dir):
    """Per generation config: the vLLM model, DEITA's first scores, the
    transformers path's first scores, and the prompts' ids."""
    path = scorer_dir / "generation_config.json"
    base = json.loads(path.read_text())
    prompts = [COMPLEXITY_TEMPLATE.format(instruction=i) for i in INSTRUCTIONS]
    out = {}
    try:
        for name, extra in VARIANTS.items():
            path.write_text(json.dumps({**base, **extra}))
            reference, ids = deita_first_scores(scorer_dir, prompts)
            lm = CausalLM(
                scorer_dir,
                device="cpu",
                dtype="float32",
                trust_remote_code=False,
                local_files_only=True,
            )
            digits = [lm.tokenizer.convert_tokens_to_ids(d) for d in "123456"]
            ours = first_token_scores(lm, ids, digits)
            vllm_lm = VLLMCausalLM(scorer_dir, device="cpu", dtype="float32", local_files_only=True)
            out[name] = dict(lm=vllm_lm, reference=reference, transformers=ours, ids=ids)
        path.write_text(json.dumps(base))  # the folder is the greedy scorer again
        yield out
    finally:
        for case in out.values():
            case["lm"].close()


def digit_ids(lm):
    return [lm.tokenizer.convert_tokens_to_ids(d) for d in "123456"]


def assert_same_scores(actual, expected):
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(actual), finite)
    np.testing.assert_allclose(actual[finite], expected[finite], atol=TOL, rtol=0)


def test_digits_rank_outside_the_top_20(scorer_dir, cases):
    model = transformers.AutoModelForCausalLM.from_pretrained(scorer_dir, dtype=torch.float32)
    digits = digit_ids(cases["greedy"]["lm"])
    for ids in cases["greedy"]["ids"]:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        top20 = set(torch.topk(logits, 20).indices.tolist())
        assert not top20 & set(digits)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("batch_size", [1, 3, len(INSTRUCTIONS)])
def test_deita_scores_equal_the_generate_loop_at_any_batch_size_and_order(
    cases, variant, batch_size
):
    case = cases[variant]
    lm, ids = case["lm"], case["ids"]
    order = np.random.default_rng(batch_size).permutation(len(ids))
    scores = np.empty((len(ids), 6))
    for start in range(0, len(ids), batch_size):
        batch = order[start : start + batch_size]
        scores[batch] = lm.first_token_scores([ids[i] for i in batch], digit_ids(lm))
    assert_same_scores(scores, case["reference"])
    np.testing.assert_allclose(
        expected_digit(scores), expected_digit(case["reference"]), atol=TOL, rtol=0
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_first_token_scores_equal_the_transformers_backend(cases, variant):
    case = cases[variant]
    scores = case["lm"].first_token_scores(case["ids"], digit_ids(case["lm"]))
    assert_same_scores(scores, case["transformers"])


def test_the_sampling_config_masks_some_digits_and_keeps_others(cases):
    # The filters matter here (else the sampling test would test nothing).
    reference = cases["sampling"]["reference"]
    assert (~np.isfinite(reference)).any()
    assert np.isfinite(reference).any(axis=1).all()


def test_generation_configs_of_one_model_share_one_engine(cases):
    engines = {id(case["lm"].engine) for case in cases.values()}
    assert len(engines) == 1


def test_threads_sharing_the_engine_get_their_own_scores(cases):
    # A Dask worker runs tasks in threads; two scorers of one model share an
    # engine, one call at a time, each with its own generation settings.
    from concurrent.futures import ThreadPoolExecutor

    jobs = [name for name in VARIANTS for _ in range(2)]

    def score(name):
        case = cases[name]
        return case["lm"].first_token_scores(case["ids"], digit_ids(case["lm"]))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(score, jobs))
    for name, scores in zip(jobs, results, strict=True):
        assert_same_scores(scores, cases[name]["reference"])


def test_a_prompt_of_the_full_context_is_scored(scorer_dir, cases):
    lm = cases["greedy"]["lm"]
    tokens = lm.encode(COMPLEXITY_TEMPLATE.format(instruction="sort a list " * 100))
    full = tokens[: lm.context]
    assert len(full) == lm.context == lm.max_length
    reference = CausalLM(
        scorer_dir, device="cpu", dtype="float32", trust_remote_code=False, local_files_only=True
    )
    expected = first_token_scores(reference, [full], digit_ids(lm))
    assert_same_scores(lm.first_token_scores([full], digit_ids(lm)), expected)


def test_a_prompt_longer_than_the_limit_never_reaches_vllm(scorer_dir):
    lm = VLLMCausalLM(scorer_dir, device="cpu", max_length=40, local_files_only=True)
    tokens = lm.encode(COMPLEXITY_TEMPLATE.format(instruction="sort a list " * 20))
    with pytest.raises(ValueError, match="longer than the vLLM engine's limit of 40 tokens"):
        lm.first_token_scores([tokens[:12], tokens[:41]], digit_ids(lm))
    assert lm._engines == {}  # refused before any engine started


def test_pickles_without_the_engine(cases):
    lm = cases["greedy"]["lm"]
    assert lm.engine is not None
    clone = pickle.loads(pickle.dumps(lm))
    assert clone._engines == {}
    assert clone.sampling == lm.sampling
    assert clone.encode("Sort a list.") == lm.encode("Sort a list.")


def test_identity_names_the_backend_and_changes_with_the_generation_config(cases):
    identities = {case["lm"].identity for case in cases.values()}
    assert len(identities) == len(VARIANTS)
    assert all(i.startswith("vllm-causal-lm|") for i in identities)


def test_sequence_losses_equal_the_transformers_losses(scorer_dir, cases):
    from skdeita.scoring._perplexity import sequence_losses

    lm = cases["greedy"]["lm"]
    sequences = [lm.encode(text + " Plants eat light.") for text in INSTRUCTIONS]
    starts = [max(1, len(s) // 2) for s in sequences]
    reference = CausalLM(
        scorer_dir, device="cpu", dtype="float32", trust_remote_code=False, local_files_only=True
    )
    expected = sequence_losses(reference, sequences, starts)
    np.testing.assert_allclose(lm.sequence_losses(sequences, starts), expected, atol=TOL, rtol=0)


def test_close_ends_the_engine_processes(cases):
    lm = cases["greedy"]["lm"]
    lm.engine  # noqa: B018 (started, if a test closed it)
    pids = [pid for engine in lm._engines.values() for pid in engine.pids()]
    assert pids and all(psutil.pid_exists(p) for p in pids)
    lm.close()
    assert not any(psutil.pid_exists(p) for p in pids)
