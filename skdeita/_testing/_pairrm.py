"""Build small, randomly initialised PairRM-shaped rankers without a model hub.

Used by the tests and the benchmarks: a DeBERTa-v2 backbone from a config, a
sentencepiece vocabulary trained on a few sentences, and llm-blender's own
ranker class around them, saved in the layout ``Blender.loadranker(path)``
reads::

    <dir>/config.json          llm-blender's RankerConfig
    <dir>/model.safetensors    the whole ranker (backbone + comparison head)
    <dir>/backbone/            the backbone's config, weights and tokenizer

The RankerConfig names ``microsoft/deberta-v3-large`` as the real PairRM's
does; the ``backbone/`` folder stands in for it offline. Its limits and
settings (``source_maxlength``, ``candidate_maxlength``, ``n_tasks``, ...)
default to PairRM's and can be changed, and the backbone may be a DeBERTa-v2
(PairRM's kind, any shape) or a BERT encoder. The ranker is assembled from
llm-blender's own classes exactly as its loader does for a path without any of
the names it reacts to, so the folder a ranker is built in never matters.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..pairrm._blender_compat import import_llm_blender
from ..pairrm._loading import quiet
from ..utils._optional import require

_SENTENCES = [
    "Hello, how are you today? I am fine, thank you for asking.",
    "Write a short poem about the sea and the wind at night.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Explain the difference between a list and a tuple in Python.",
    "Sourdough bread needs flour, water, salt and a lively starter.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "Give three tips for a good night of sleep and a calm morning.",
    "The capital of France is Paris; the capital of Japan is Tokyo.",
    "Sort the numbers 5, 3, 9 and 1 in increasing order, please.",
    "A good answer is helpful, honest, harmless, clear and complete.",
    "Translate 'good morning' into Spanish, French and German.",
    "Machine learning models learn patterns from examples in data.",
]


def _train_vocabulary(directory: Path, vocab_size: int, texts) -> Path:
    spm = require("sentencepiece", "Building a test ranker")
    corpus = directory / "corpus.txt"
    lines = [line for t in texts for line in t.splitlines() if line.strip()]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = directory / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        unk_piece="[UNK]",
        user_defined_symbols=["[MASK]"],
        minloglevel=2,
        input_sentence_size=200_000,
        shuffle_input_sentence=True,
    )
    corpus.unlink()
    (directory / "spm.vocab").unlink()
    return prefix.with_suffix(".model")


# Backbone kinds and the llm-blender model_type that loads each (llm-blender
# loads any causal LM for "llama").
_MODEL_TYPES = {"deberta-v2": "deberta", "bert": "bert", "gpt2": "llama", "bart": "bart"}


def make_tiny_pairrm(
    directory: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    vocab_size: int = 180,
    corpus: list[str] | None = None,
    head_scale: float = 1000.0,
    initializer_range: float = 0.3,
    seed: int = 0,
    source_maxlength: int = 1224,
    candidate_maxlength: int = 412,
    n_tasks: int = 1,
    drop_out: float = 0.05,
    fp16: bool = True,
    backbone_type: str = "deberta-v2",
    backbone_config: dict | None = None,
    config_model_name: str = "microsoft/deberta-v3-large",
) -> Path:
    """Save a randomly initialised PairRM-shaped ranker under ``directory``.

    Parameters
    ----------
    directory : str or Path
        Where to write (created if needed).
    hidden_size, num_layers, num_heads, intermediate_size : int
        Backbone shape. DeBERTa-v3-large (PairRM's) is 1024, 24, 16, 4096.
    vocab_size : int
        Size of the trained sentencepiece vocabulary.
    corpus : list of str or None
        Texts to train the vocabulary on (default: a dozen built-in
        sentences). Train on real text with a few thousand pieces to get
        realistic token counts for benchmarks.
    head_scale : float
        Multiplies the comparison head's last layer so that scores of
        different candidates differ clearly.
    initializer_range : float
        Standard deviation of the random backbone weights (larger than a
        trained model's, so that context changes the hidden states more).
    seed : int
        Seed of the random weights.
    source_maxlength, candidate_maxlength, n_tasks, drop_out, fp16
        The RankerConfig settings (PairRM's by default: 1224, 412, 1, 0.05,
        True). ``n_tasks`` is the width of the comparison head's output.
    backbone_type : {"deberta-v2", "bert", "gpt2", "bart"}
        The backbone: DeBERTa-v2 (PairRM's kind, ``model_type`` "deberta"), a
        BERT encoder ("bert"), a GPT-2 causal LM (llm-blender's causal-LM type
        "llama") or a BART encoder-decoder ("bart"). All use the same
        sentencepiece tokenizer.
    backbone_config : dict or None
        Extra fields of the backbone's config (e.g. ``position_buckets``,
        ``share_att_key``, ``pos_att_type``, ``conv_kernel_size``).
    config_model_name : str
        The backbone name ``config.json`` records (the real PairRM's by default).

    Returns
    -------
    path : Path
        The ranker directory, ready for ``PairRMRanker(model=path)``.
    """
    torch = require("torch", "Building a test ranker")
    tf = require("transformers", "Building a test ranker")
    safetensors_torch = require("safetensors.torch", "Building a test ranker")
    import_llm_blender()
    from llm_blender.pair_ranker.config import RankerConfig
    from llm_blender.pair_ranker.model_util import build_collator, build_pretrained_model
    from llm_blender.pair_ranker.ranker import CrossCompareReranker

    if backbone_type not in _MODEL_TYPES:
        raise ValueError(
            f"backbone_type must be one of {sorted(_MODEL_TYPES)}, got {backbone_type!r}"
        )

    directory = Path(directory)
    backbone = directory / "backbone"
    backbone.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    _train_vocabulary(backbone, vocab_size, corpus or _SENTENCES * 4)
    # Loading from spm.model through a tokenizer_config works on transformers
    # 4.57 and 5 alike (their DebertaV2Tokenizer constructors differ).
    (backbone / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False})
    )
    with quiet():  # no progress bars or notices from transformers
        tokenizer = tf.AutoTokenizer.from_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
        shape = dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=512,
            pad_token_id=0,
            initializer_range=initializer_range,
        )
        model_type = _MODEL_TYPES[backbone_type]
        if backbone_type == "deberta-v2":
            defaults = dict(
                relative_attention=True,
                position_buckets=256,
                norm_rel_ebd="layer_norm",
                share_att_key=True,
                pos_att_type=["p2c", "c2p"],
                position_biased_input=False,
                type_vocab_size=0,
            )
            config = tf.DebertaV2Config(**{**shape, **defaults, **(backbone_config or {})})
            tf.DebertaV2Model(config).save_pretrained(backbone)
        elif backbone_type == "bert":
            config = tf.BertConfig(**{**shape, **(backbone_config or {})})
            tf.BertModel(config).save_pretrained(backbone)
        elif backbone_type == "gpt2":
            config = tf.GPT2Config(
                vocab_size=len(tokenizer),
                n_embd=hidden_size,
                n_layer=num_layers,
                n_head=num_heads,
                n_inner=intermediate_size,
                n_positions=512,
                initializer_range=initializer_range,
                **(backbone_config or {}),
            )
            tf.GPT2LMHeadModel(config).save_pretrained(backbone)
        else:  # bart
            config = tf.BartConfig(
                vocab_size=len(tokenizer),
                d_model=hidden_size,
                encoder_layers=num_layers,
                decoder_layers=num_layers,
                encoder_attention_heads=num_heads,
                decoder_attention_heads=num_heads,
                encoder_ffn_dim=intermediate_size,
                decoder_ffn_dim=intermediate_size,
                max_position_embeddings=512,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
                decoder_start_token_id=2,
                init_std=initializer_range,
                **(backbone_config or {}),
            )
            tf.BartForConditionalGeneration(config).save_pretrained(backbone)

        ranker_config = RankerConfig(
            ranker_type="pairranker",
            model_type=model_type,
            model_name=str(backbone),
            source_maxlength=source_maxlength,
            candidate_maxlength=candidate_maxlength,
            n_tasks=n_tasks,
            drop_out=drop_out,
            inference_mode="bubble",
            fp16=fp16,
        )
        # llm-blender's load_ranker, minus its tests on the path's name.
        tokenizer = tf.AutoTokenizer.from_pretrained(backbone)
        build_collator("pairranker", tokenizer, source_maxlength, candidate_maxlength)
        pretrained = build_pretrained_model(model_type, str(backbone))
        pretrained.resize_token_embeddings(len(tokenizer))
        ranker = CrossCompareReranker(pretrained, ranker_config, tokenizer).eval()
        with torch.no_grad():
            ranker.head_layer[-1].weight.mul_(head_scale)
        safetensors_torch.save_model(ranker, str(directory / "model.safetensors"))
        ranker_config.model_name = config_model_name  # "microsoft/deberta-v3-large", as PairRM's
        (directory / "config.json").write_text(json.dumps(ranker_config.to_dict(), indent=2))
    return directory
