"""Tiny random causal LMs with tokenizers trained on the spot.

Stand-ins for DEITA's Llama scorers and for GPT-2 (Superfiltering's IFD):
same architectures and the same loading code as the real models, a few
thousand parameters, and a vocabulary trained at build time, so the ids of
the tokens "1" ... "6" are nothing like Llama's (29896, ...) and code that
hard-codes them fails. Context lengths differ from the real models' too.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..utils._optional import require

_CORPUS = [
    "You are a helpful assistant. Please identify the complexity score of the "
    "following user query. ##Query: ##Complexity: 1 2 3 4 5 6",
    "You are a helpful assistant. Please identify the quality score of the Response "
    "corresponding to the Question. #Question#: #Response#: ##Quality: 1 2 3 4 5 6",
    "How do I sort a list in Python? Use sorted(xs) or xs.sort() for a list.",
    "Write a short poem about the sea and the wind at night, in four lines.",
    "Explain photosynthesis to a ten year old child in simple words please.",
    "Give three tips for a good night of sleep and a calm morning routine.",
    "The capital of France is Paris; the capital of Japan is Tokyo, 1998.",
    "Sourdough bread needs flour, water, salt and a lively starter culture.",
    "Translate good morning into Spanish, French and German: buenos dias.",
    "Machine learning models learn patterns from examples in their data 42.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 2024 3.14 score 6 of 6.",
]


# Generation configs that change generate's first scores (see
# make_tiny_llama_scorer). The sampling one is mild enough (a high
# temperature, vLLM's highest, and wide top-k and top-p) that on the test
# prompts one to four of the six digits survive its filters, even with
# bury_digits=True, and the others are masked.
GENERATION_CONFIGS = {
    "repetition-penalty": {"repetition_penalty": 1.3},
    "sampling": {"do_sample": True, "temperature": 2.0, "top_k": 120, "top_p": 0.999},
}
# How much bury_digits shrinks the digits' output rows: their logits keep a
# spread of a few units while the top tokens' are about 5x larger.
_BURY_SCALE = 0.15


def _train_tokenizer(directory: Path, vocab_size: int, bos: bool, corpus=None):
    """A byte-level-free BPE with Llama-like specials (BOS added on encode)."""
    tk = require("tokenizers", "Building a test model")
    tf = require("transformers", "Building a test model")
    specials = ["<unk>", "<s>", "</s>"]
    tokenizer = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = tk.normalizers.NFKC()
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Metaspace()
    tokenizer.decoder = tk.decoders.Metaspace()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    tokenizer.train_from_iterator(list(corpus or []) + _CORPUS * 3, trainer=trainer)
    if bos:
        tokenizer.post_processor = tk.processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(directory)
    return fast


def make_tiny_llama_scorer(
    directory: str | Path,
    *,
    seed: int = 0,
    max_position_embeddings: int = 192,
    generation_config: dict | str | None = None,
    corpus=None,
    vocab_size: int = 240,
    bury_digits: bool = False,
    dtype: str = "float32",
    **config,
) -> Path:
    """Write a tiny random Llama-architecture causal LM (a DEITA-shaped scorer).

    The weights are float32 unless asked (and the config says which). vLLM's
    CPU build runs it with ``head_dim=64`` (its CPU attention supports no
    smaller head).

    Parameters
    ----------
    directory : str or Path
        Where to write it (created).
    seed : int, default=0
        Seed of the random weights: two seeds make two different scorers.
    max_position_embeddings : int, default=192
        The model's context (not the real scorers' 2048 or 4096).
    generation_config : dict, str or None, default=None
        Extra generation settings (e.g. ``{"repetition_penalty": 1.3}``), or
        the name of one of :data:`GENERATION_CONFIGS`: ``"repetition-penalty"``
        or ``"sampling"`` (``do_sample`` with temperature, top-k and top-p).
    corpus : iterable of str or None, default=None
        Extra texts to train the tokenizer on (realistic token counts).
    vocab_size : int, default=240
        Target size of the trained vocabulary.
    bury_digits : bool, default=False
        Scale the output-layer rows of the tokens "1" ... "6" down (by 0.15),
        so that on the test prompts they rank far below the top 20 tokens of
        the first-token distribution (where a top-k log-probability list
        would miss them), while their logits still differ from each other.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        The weights' dtype, as built and saved (bfloat16 halves a
        benchmark-sized model on disk and in memory).
    **config
        Overrides of the model's ``LlamaConfig`` (e.g. a 7B shape for
        benchmarks, or ``head_dim=64`` for vLLM's CPU build).

    Returns
    -------
    directory : Path
        The model directory, loadable with ``AutoModelForCausalLM``.
    """
    torch = require("torch", "Building a test model")
    tf = require("transformers", "Building a test model")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(directory, vocab_size=vocab_size, bos=True, corpus=corpus)
    torch.manual_seed(seed)
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
    )
    if isinstance(generation_config, str):
        generation_config = GENERATION_CONFIGS[generation_config]
    config = tf.LlamaConfig(
        **{**shape, **config},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.dtype = dtype  # said explicitly: loaders that read it must not guess
    # Built in its dtype: a 13B shape in float32 would need 52 GB of RAM.
    saved_default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        model = tf.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(saved_default)
    # Random logits at the digit ids are nearly flat; sharper ones make a
    # wrong digit id or a wrong position visible in the score.
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
        if bury_digits:
            digits = [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
            model.lm_head.weight[digits] *= _BURY_SCALE
    model.save_pretrained(directory)
    gen = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **(generation_config or {}),
    }
    (directory / "generation_config.json").write_text(json.dumps(gen))
    return directory


def make_tiny_gpt2(directory: str | Path, *, seed: int = 0, n_positions: int = 160) -> Path:
    """Write a tiny random GPT-2 causal LM with a trained tokenizer (no BOS).

    Parameters
    ----------
    directory : str or Path
        Where to write it (created).
    seed : int, default=0
        Seed of the random weights.
    n_positions : int, default=160
        The model's context (not GPT-2's 1024).

    Returns
    -------
    directory : Path
        The model directory, loadable with ``AutoModelForCausalLM``.
    """
    torch = require("torch", "Building a test model")
    tf = require("transformers", "Building a test model")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(directory, vocab_size=240, bos=False)
    torch.manual_seed(seed)
    config = tf.GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=n_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    tf.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory
