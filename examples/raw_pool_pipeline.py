"""From a raw pool: DEITA's scorers, embeddings and selection in one pipeline.

The real scorers (hkust-nlp/deita-complexity-scorer and -quality-scorer) are
13B models that need a GPU and a download; this example builds two tiny
random Llama scorers in a temporary folder instead, so it runs anywhere in
seconds. Swap in the real names (the defaults) for real data.
"""

import tempfile
import warnings
from pathlib import Path

from skdeita import make_deita_pipeline
from skdeita._testing import make_tiny_llama_scorer
from skdeita.datasets import load_sample
from skdeita.exceptions import TruncationWarning

pool = load_sample()[["instruction", "response"]].head(60)  # raw rows: no scores yet

with tempfile.TemporaryDirectory() as tmp:
    complexity = make_tiny_llama_scorer(Path(tmp) / "complexity", seed=0)
    quality = make_tiny_llama_scorer(Path(tmp) / "quality", seed=1)
    curate = make_deita_pipeline(
        12,  # the data budget
        complexity_model=complexity,  # default: "hkust-nlp/deita-complexity-scorer"
        quality_model=quality,  # default: "hkust-nlp/deita-quality-scorer"
        show_progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the tiny models' context is short
        subset = curate.fit_transform(pool)

columns = ["instruction", "evol_instruction_score", "evol_response_score", "deita_score"]
print(subset[columns].round(2).head(6).to_string())
assert len(subset) == 12
assert subset["evol_instruction_score"].between(1, 6).all()
assert subset["evol_response_score"].between(1, 6).all()
# Best first: deita_score = complexity x quality, in decreasing order.
assert subset["deita_score"].is_monotonic_decreasing
