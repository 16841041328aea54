"""The scores of the first token a causal LM would generate, for many prompts.

What DEITA reads is ``generate(...).scores[0]``: the last prompt position's
logits, passed through the logits processors the model's generation config
asks for (a repetition penalty; with ``do_sample``, temperature, top-k,
top-p ...). Calling ``generate`` once per prompt pays its overhead per row
and recomputes the template every prompt shares. Here, per batch:

1. the token prefix common to the batch (DEITA's template text, at least)
   runs once, and its key/value cache is shared by every row;
2. the rest of each prompt runs right-padded (a causal model's real
   positions never see the padding after them), and only each row's last
   real position goes through the output layer;
3. the processors are the ones ``generate`` itself builds from the
   generation config, applied to each row with its own unpadded ids.

This fast path is used for Llama-, Mistral- and Qwen2-architecture models,
whose logits are exactly the output layer's; any other model, or a
transformers version where the processors cannot be built, goes through
``generate`` on left-padded batches, which is equally exact, only slower.
"""

from __future__ import annotations

import copy

import numpy as np

# Architectures whose CausalLM logits are ``lm_head(final hidden state)``
# with nothing after it (Gemma's soft-capping and Cohere's scale would be).
_PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def first_token_scores(lm, sequences: list[list[int]], token_ids: list[int]) -> np.ndarray:
    """``(n, len(token_ids))`` float64: generate's first scores at ``token_ids``."""
    fast = _fast_path(lm)
    if fast is None:
        return _via_generate(lm, sequences, token_ids)
    logits = _last_logits(lm, sequences)
    rows = []
    for seq, row in zip(sequences, logits, strict=True):
        ids = lm.torch.tensor([seq], device=row.device)
        rows.append(fast(len(seq))(ids, row[None])[0, token_ids])
    return lm.torch.stack(rows).double().cpu().numpy()


def _fast_path(lm):
    """A ``length -> processors`` factory, or None when only generate will do."""
    cached = getattr(lm, "_step0_processors", None)
    if cached is not None:
        return cached or None
    factory = False
    if getattr(lm.model.config, "model_type", None) in _PLAIN_HEAD_MODELS:
        try:
            factory = _processor_factory(lm)
            factory(2)  # build once now: a failure means "use generate"
        except (AttributeError, TypeError, ValueError):
            factory = False
    lm._step0_processors = factory
    return factory or None


def _processor_factory(lm):
    from transformers import LogitsProcessorList

    config = copy.deepcopy(lm.model.generation_config)
    # Settings left unset take transformers' global defaults, as generate
    # fills them in (transformers 5: top_k=50 when the config samples).
    defaults = getattr(config, "_get_default_generation_params", None)
    for name, value in (defaults() if defaults else {}).items():
        if getattr(config, name, None) is None:
            setattr(config, name, value)
    config.max_new_tokens = 1
    if config.pad_token_id is None:
        config.pad_token_id = lm.pad_id
    built: dict[int, object] = {}

    def processors(length: int):
        # Some processors depend on the prompt's length: one list per length.
        if length not in built:
            built[length] = lm.model._get_logits_processor(
                generation_config=config,
                input_ids_seq_length=length,
                encoder_input_ids=None,
                prefix_allowed_tokens_fn=None,
                logits_processor=LogitsProcessorList(),
                device=lm.device,
                model_kwargs={},
            )
        return built[length]

    return processors


def _common_prefix(sequences: list[list[int]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences) - 1  # leave every row one token to run
    for k in range(max(n, 0)):
        token = first[k]
        if any(s[k] != token for s in sequences):
            return k
    return max(n, 0)


def _last_logits(lm, sequences: list[list[int]]):
    """Float32 logits of each sequence's last position, ``(n, vocab)``."""
    torch = lm.torch
    decoder = lm.model.get_decoder()
    head = lm.model.get_output_embeddings()
    n, p = len(sequences), _common_prefix(sequences)
    device = lm.device
    with torch.inference_mode():
        cache = None
        if p:
            prefix = torch.tensor([sequences[0][:p]], device=device)
            cache = decoder(input_ids=prefix, use_cache=True).past_key_values
            cache.batch_repeat_interleave(n)
        rest = [s[p:] for s in sequences]
        width = max(len(s) for s in rest)
        ids = torch.full((n, width), lm.pad_id, dtype=torch.long)
        mask = torch.zeros((n, p + width), dtype=torch.long)
        mask[:, :p] = 1
        for k, seq in enumerate(rest):
            ids[k, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[k, p : p + len(seq)] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (p + torch.arange(width, device=device)).expand(n, width)
        hidden = decoder(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=cache is not None,
        ).last_hidden_state
        last = torch.tensor([len(s) - 1 for s in rest], device=device)
        return head(hidden[torch.arange(n, device=device), last]).float()


def _via_generate(lm, sequences: list[list[int]], token_ids: list[int]) -> np.ndarray:
    ids, mask = lm.left_padded(sequences)
    with lm.torch.inference_mode():
        out = lm.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=lm.pad_id,
        )
    return out.scores[0][:, token_ids].double().cpu().numpy()
