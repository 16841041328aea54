"""IFD throughput: skdeita's IFDScorer vs Superfiltering's one-row loop.

Real AlpacaEval texts (instruction + output of one generator; by default
text_davinci_001, whose short outputs are like Alpaca's 52k, the data
Superfiltering was run on), in one process, on the same randomly initialised
model, checking that the scores agree (<= 1e-4 relative). The loop is
Superfiltering's ``code_ifd/data_analysis.py`` (two forward passes per row,
the model's own loss) and ``put_analysis_to_data.py`` (the ratio).

``--size small`` (default) is GPT-2 small's shape (12 layers, 768 hidden,
12 heads, vocabulary 50,257, context 1,024); ``--size tiny`` is the 2-layer
test model. GPT-2's tokenizer cannot be downloaded here: a byte-level BPE
like GPT-2's is trained at run time on the AlpacaEval texts, so that token
counts are realistic.

    python benchmarks/bench_ifd.py --threads 1                       # CPU
    python benchmarks/bench_ifd.py --device cuda --rows 805 --batch-sizes 16,64,128
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from skdeita import IFDScorer  # noqa: E402

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"
SIZES = {
    "small": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),
    "tiny": dict(n_layer=2, n_embd=32, n_head=2, n_positions=1024),
}


def load_rows(generator: str) -> pd.DataFrame:
    records = json.loads((RESULTS / f"{generator}.json").read_text())
    return pd.DataFrame(
        {
            "instruction": [r["instruction"] for r in records],
            "response": [r["output"] for r in records],
        }
    )


def build_model(directory: Path, size: str):
    """A random GPT-2-shaped model and a byte-level BPE trained on AlpacaEval."""
    import tokenizers as tk
    import torch
    import transformers as tf

    corpus = []
    for path in sorted(RESULTS.glob("*.json")):
        corpus += [r["instruction"] + "\n" + r["output"] for r in json.loads(path.read_text())]
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=50257,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    eos = "<|endoftext|>"
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=eos,
        eos_token=eos,
        unk_token=eos,
        model_max_length=1024,
    )
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=50257, **SIZES[size])
    tf.GPT2LMHeadModel(config).save_pretrained(directory)
    return len(fast)


def superfiltering_loop(tokenizer, model, frame, max_length, device):
    """Superfiltering's code_ifd/data_analysis.py + put_analysis_to_data.py, one row at a time."""
    import torch

    def whole_text(text, limit):
        ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=limit)
        ids = ids.to(device)
        with torch.no_grad():
            loss = model(ids, labels=ids.contiguous()).loss
        return torch.exp(loss).item()

    def part_text(text, target, limit):
        ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=limit)
        ids = ids.to(device)
        start = len(tokenizer.encode(text[: text.rfind(target)]))
        labels = ids.clone()
        labels[0, :start] = -100
        with torch.no_grad():
            loss = model(ids, labels=labels).loss
        return torch.exp(loss).item()

    out = []
    for instruction, output in zip(frame["instruction"], frame["response"], strict=True):
        prompt = f"{instruction}\n"
        n_prompt = tokenizer.encode(
            prompt, return_tensors="pt", truncation=True, max_length=max_length
        ).shape[1]
        alone = whole_text(output, max_length - n_prompt + 1)
        condition = part_text(prompt + output, output, max_length)
        out.append(condition / alone)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return np.array(out)


def timed(fn, repeats):
    best, result = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main():
    warnings.simplefilter("ignore")  # NaN rows and cut rows are expected on real data
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--generator", default="text_davinci_001")
    parser.add_argument("--loop-rows", type=int, default=24, help="rows timed against the loop")
    parser.add_argument("--rows", type=int, default=64, help="rows of the throughput runs")
    parser.add_argument("--batch-sizes", default="16")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved; best time kept")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args()
    import torch
    import transformers as tf

    if args.threads:
        # On a shared machine one thread per process avoids stalls at thread barriers.
        torch.set_num_threads(args.threads)

    frame = load_rows(args.generator)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        vocab = build_model(Path(tmp), args.size)
        print(
            f"model: GPT-2 {args.size} shape, random weights; tokenizer: byte-level BPE, "
            f"{vocab} tokens, trained in {time.perf_counter() - t:.0f} s"
        )
        tokenizer = tf.AutoTokenizer.from_pretrained(tmp)
        model = tf.AutoModelForCausalLM.from_pretrained(tmp).to(args.device).eval()
        tokens = [
            len(tokenizer.encode(i + "\n" + r))
            for i, r in zip(frame.instruction, frame.response, strict=True)
        ]
        print(
            f"data: {args.generator}, {len(frame)} rows, tokens per row mean "
            f"{np.mean(tokens):.0f}, median {np.median(tokens):.0f}, max {max(tokens)}; "
            f"torch threads {torch.get_num_threads()}, device {args.device}"
        )

        def scorer(batch_size):
            # Real data has one-token answers ("Yes."): no IFD, NaN (as in the loop).
            return IFDScorer(
                tmp,
                batch_size=batch_size,
                device=args.device,
                on_error="nan",
                show_progress_bar=False,
            )

        sample = frame.head(args.loop_rows)
        warm = sample.head(2)
        superfiltering_loop(tokenizer, model, warm, 1024, args.device)
        # Repeats interleave the implementations, so that a noisy machine
        # slows each of them alike; the best time of each is reported.
        ests = {b: scorer(b).fit(sample) for b in batch_sizes}
        for est in ests.values():
            est.transform(warm)
        best = {key: math.inf for key in ["loop", *batch_sizes]}
        outs = {}
        for _ in range(args.repeats):
            t, want = timed(
                lambda: superfiltering_loop(tokenizer, model, sample, 1024, args.device), 1
            )
            best["loop"] = min(best["loop"], t)
            for b, est in ests.items():
                t, outs[b] = timed(lambda est=est: est.transform(sample), 1)
                best[b] = min(best[b], t)
        t_loop = best["loop"]
        rows = [("Superfiltering one-row loop", "-", len(sample), t_loop, 1.0, 0.0)]
        for b in batch_sizes:
            got = outs[b]["ifd_score"].to_numpy()
            assert np.array_equal(np.isnan(got), np.isnan(want))
            err = float(np.nanmax(np.abs(got / want - 1)))
            assert err <= 1e-4, err
            rows.append(("skdeita IFDScorer", b, len(sample), best[b], t_loop / best[b], err))
        print("\nIFDScorer vs the one-row loop (same rows, same weights):\n")
        print("| implementation | batch | rows | time (s) | rows/s | speed-up | max rel. diff |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, b, n, secs, speed, err in rows:
            print(
                f"| {name} | {b} | {n} | {secs:.1f} | {n / secs:.2f} | {speed:.2f}x | {err:.1e} |"
            )
        if args.rows:
            many = frame.head(args.rows)
            n_tok = sum(tokens[: len(many)])
            print(
                f"\nIFDScorer throughput, {len(many)} rows ({n_tok} tokens of prompt + "
                "response; each row is two sequences):\n"
            )
            print("| batch | time (s) | rows/s | tokens/s |")
            print("|---:|---:|---:|---:|")
            for b in batch_sizes:
                est = scorer(b).fit(many)
                est.transform(warm)
                secs, _ = timed(lambda est=est: est.transform(many), 1)
                print(f"| {b} | {secs:.1f} | {len(many) / secs:.2f} | {n_tok / secs:.0f} |")


if __name__ == "__main__":
    main()
