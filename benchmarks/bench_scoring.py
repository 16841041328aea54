"""DEITA scoring throughput: ComplexityScorer/QualityScorer vs DEITA's one-row loop.

The same rows, the same random-weight Llama-architecture scorer, side by side
in one run. DEITA's procedure (hkust-nlp/deita, transformers path) encodes one
prompt, calls ``generate(max_new_tokens=2, output_scores=True)`` and reads the
first step's logits at the ids of "1" ... "6"; skdeita scores length-sorted,
left-padded batches with one generate step each. Scores are asserted equal
(<= 1e-4) before any time is reported.

Rows: AlpacaEval instructions and responses (../shared/data, or
$SKDEITA_SHARED_DATA). The tokenizer is trained on them at run time, so token
counts are realistic.

    python benchmarks/bench_scoring.py                       # CPU, small Llama
    python benchmarks/bench_scoring.py --device cuda --shape 7b --dtype bfloat16 --n 512

``--shape 7b`` builds a Llama-2-7B-shaped model (hidden 4096, 32 layers,
vocab 32000) with random weights: it needs a GPU with ~30 GB free; ``13b``
is Llama-2-13B's shape (DEITA's scorers), ~55 GB.

``--backend vllm`` (run it in the vLLM environment, ``.venv-vllm/bin/python``,
or one with a GPU build of vLLM) also times ``VLLMCausalLM``, the vLLM
engine behind ``backend="vllm"``, on the same prompts (truncated as the
scorers truncate them), and asserts its scores equal too. Its engine starts
first and is closed before the transformers models load, so that on a GPU
each has the memory to itself; engine start and the first (warm-up) batch
are reported apart from the timed run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from skdeita import ComplexityScorer, QualityScorer
from skdeita._testing import make_tiny_llama_scorer
from skdeita.scoring._deita import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE

SHARED_DATA = Path(
    os.environ.get("SKDEITA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
RESULTS = SHARED_DATA / "alpaca_eval" / "results"
SHAPES = {
    # A tiny Llama (per-call overhead dominates), a small CPU-sized one
    # (about 20M parameters: compute dominates) and Llama-2-7B's shape.
    "tiny": dict(
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=8000,
    ),
    "small": dict(
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=8000,
    ),
    "7b": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    ),
    "13b": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        vocab_size=32000,
    ),
}


def load_rows(n: int) -> pd.DataFrame:
    records = json.loads((RESULTS / "gpt4_1106_preview.json").read_text())
    frame = pd.DataFrame(records)[["instruction", "output"]].rename(columns={"output": "response"})
    return frame.head(n).reset_index(drop=True)


def deita_loop(path, prompts, device, dtype) -> tuple[np.ndarray, float]:
    """DEITA's scorer, one row at a time (the reference and the baseline)."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    ids = [tok.convert_tokens_to_ids(d) for d in "123456"]
    out = []
    start = time.perf_counter()
    for prompt in prompts:
        x = tok.encode(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            gen = model.generate(
                x,
                max_new_tokens=2,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tok.eos_token_id,
            )
        logits = gen.scores[0][0][ids].double().cpu().numpy()
        out.append(float((softmax(logits) * np.arange(1, 7)).sum()))
    return np.array(out), time.perf_counter() - start


def expected_digit(logits: np.ndarray) -> np.ndarray:
    return softmax(logits, axis=1) @ np.arange(1.0, 7.0)


def vllm_scores(path, template, fields, args) -> tuple[np.ndarray, dict]:
    """VLLMCausalLM on every prompt: scores, and the times of each phase."""
    from skdeita.scoring._deita import encode_within
    from skdeita.scoring._vllm import VLLMCausalLM

    backend_kwargs = {}
    if args.gpu_memory_utilization is not None:
        backend_kwargs["gpu_memory_utilization"] = args.gpu_memory_utilization
    lm = VLLMCausalLM(
        path,
        device=args.device,
        dtype=args.dtype,
        max_length=args.max_length,
        backend_kwargs=backend_kwargs,
    )
    ids = [encode_within(lm, template, f, args.max_length)[0] for f in fields]
    digits = [lm.tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    times = {}
    start = time.perf_counter()
    lm.engine  # noqa: B018 (starts it)
    times["start"] = time.perf_counter() - start
    start = time.perf_counter()
    lm.first_token_scores(ids[:2], digits)  # warm-up (kernels, compiled helpers)
    times["first"] = time.perf_counter() - start
    start = time.perf_counter()
    logits = lm.first_token_scores(ids, digits)
    times["run"] = time.perf_counter() - start
    lm.close()
    return expected_digit(logits), times


def free_memory() -> None:
    from skdeita.utils._model_cache import clear_model_cache

    clear_model_cache()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160, help="rows (default 160)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--shape", default="small", choices=sorted(SHAPES))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--backend",
        default="transformers",
        choices=["transformers", "vllm"],
        help="vllm: also time the vLLM engine (backend='vllm') on the same rows",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        help="vLLM's share of GPU memory (default: vLLM's own; on CPU skdeita sizes it)",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = load_rows(args.n)
    corpus = (rows["instruction"] + "\n" + rows["response"]).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_llama_scorer(
            Path(tmp) / "scorer",
            max_position_embeddings=4096,
            corpus=corpus,
            dtype=args.dtype,
            **SHAPES[args.shape],
        )
        with torch.device("meta"):  # counts parameters without loading them
            shell = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
        n_params = sum(p.numel() for p in shell.parameters())
        dtype = getattr(torch, args.dtype)
        table, vllm_table = [], []
        for name, cls, template in (
            ("complexity", ComplexityScorer, COMPLEXITY_TEMPLATE),
            ("quality", QualityScorer, QUALITY_TEMPLATE),
        ):
            fields = [
                {"instruction": r.instruction, "output": r.response} for r in rows.itertuples()
            ]
            if args.backend == "vllm":
                vllm_out, vllm_times = vllm_scores(path, template, fields, args)
            scorer = cls(
                path,
                batch_size=args.batch_size,
                max_length=args.max_length,
                device=args.device,
                dtype=args.dtype,
                show_progress_bar=False,
            )
            scorer.fit(rows.head(2)).transform(rows.head(2))  # load once, warm up
            start = time.perf_counter()
            ours = scorer.transform(rows)[scorer.output_col].to_numpy()
            t_ours = time.perf_counter() - start
            del scorer
            free_memory()
            prompts = [template.format(**f) for f in fields]
            tok = AutoTokenizer.from_pretrained(path)
            tokens = sum(len(tok.encode(p)) for p in prompts)
            keep = [i for i, p in enumerate(prompts) if len(tok.encode(p)) <= args.max_length]
            ref, t_ref = deita_loop(path, [prompts[i] for i in keep], args.device, dtype)
            tol = 1e-4 if args.dtype == "float32" else 5e-2
            np.testing.assert_allclose(ours[keep], ref, atol=tol)
            t_ref_all = t_ref * len(prompts) / len(keep)
            table.append(
                (name, len(rows), tokens, t_ref_all, t_ours, t_ref_all / t_ours, tokens / t_ours)
            )
            if args.backend == "vllm":
                np.testing.assert_allclose(vllm_out[keep], ref, atol=tol)
                np.testing.assert_allclose(vllm_out, ours, atol=tol)
                vllm_table.append((name, len(rows), tokens, t_ref_all, t_ours, vllm_times))
            free_memory()
    print(
        f"model: Llama {args.shape} shape, {n_params / 1e6:.1f}M parameters, {args.dtype}, "
        f"device {args.device}, batch {args.batch_size}, rows {args.n}"
    )
    print(
        f"{'scorer':<11}{'rows':>6}{'tokens':>9}{'DEITA loop s':>14}{'skdeita s':>11}"
        f"{'speed-up':>10}{'tokens/s':>11}"
    )
    for name, n, tokens, t_ref, t_ours, ratio, tps in table:
        print(f"{name:<11}{n:>6}{tokens:>9}{t_ref:>14.2f}{t_ours:>11.2f}{ratio:>9.1f}x{tps:>11.0f}")
    if vllm_table:
        print("\nvLLM (backend='vllm'); scores equal to DEITA's loop and the transformers backend")
        print(
            f"{'scorer':<11}{'start s':>9}{'first s':>9}{'run s':>8}{'rows/s':>9}{'tokens/s':>10}"
            f"{'vs DEITA':>10}{'vs transformers':>17}"
        )
        for name, n, tokens, t_ref, t_ours, times in vllm_table:
            run = times["run"]
            print(
                f"{name:<11}{times['start']:>9.1f}{times['first']:>9.1f}{run:>8.2f}"
                f"{n / run:>9.1f}{tokens / run:>10.0f}{t_ref / run:>9.1f}x{t_ours / run:>16.1f}x"
            )


if __name__ == "__main__":
    main()
