"""Multi-turn conversations: parsing both common layouts into turns, rendering.

A cell of a messages column is a list of messages in one of two layouts:

- ShareGPT: ``[{"from": "human" | "gpt" | "system", "value": ...}, ...]``
- OpenAI: ``[{"role": "user" | "assistant" | "system", "content": ...}, ...]``

Both parse to the same :class:`Conversation`: an optional system message and
a list of turns, each a user message and the reply that follows it (``None``
for a trailing user message). A system message is not a turn. Anything else
(an unknown role, a message without text, two user messages or two replies
in a row, a reply before any user message) is an error naming the row, raised
before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validation import is_missing

_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Turn:
    user: str
    reply: str | None  # None: the conversation ends on this user message


@dataclass(frozen=True)
class Conversation:
    system: str | None
    turns: tuple[Turn, ...]


def _message(msg, where: str) -> tuple[str, str]:
    """``(role, text)`` of one message in either layout."""
    if not isinstance(msg, dict):
        raise TypeError(f"{where}: a message must be a dict, got {type(msg).__name__}.")
    if "role" in msg or "content" in msg:
        role, text = msg.get("role"), msg.get("content")
    elif "from" in msg or "value" in msg:
        role, text = msg.get("from"), msg.get("value")
    else:
        raise ValueError(
            f"{where}: a message needs 'role'/'content' (OpenAI) or 'from'/'value' "
            f"(ShareGPT) keys, got {sorted(msg)}."
        )
    if role not in _ROLES:
        raise ValueError(
            f"{where}: unknown role {role!r}; use user/assistant/system (OpenAI) or "
            "human/gpt/system (ShareGPT)."
        )
    if not isinstance(text, str):
        raise ValueError(f"{where}: the message has no text (got {type(text).__name__}).")
    return _ROLES[role], text


def parse_conversation(cell, label, column: str) -> Conversation:
    """Parse one cell; errors name the column, the row label and the message."""
    if isinstance(cell, np.ndarray):  # Parquet list columns arrive as arrays
        cell = cell.tolist()
    if not isinstance(cell, list | tuple) or len(cell) == 0:
        raise ValueError(
            f"Column {column!r} at row {label!r} must hold a non-empty list of messages, "
            f"got {type(cell).__name__}."
        )
    system, turns, pending = None, [], None
    for k, msg in enumerate(cell):
        where = f"Column {column!r}, row {label!r}, message {k}"
        role, text = _message(msg, where)
        if role == "system":
            if k != 0:
                raise ValueError(f"{where}: a system message must come first.")
            system = text
        elif role == "user":
            if pending is not None:
                raise ValueError(f"{where}: two user messages in a row (no reply between).")
            pending = text
        else:
            if pending is None:
                raise ValueError(
                    f"{where}: a reply with no user message before it (two replies in a "
                    "row, or a conversation that starts with a reply)."
                )
            turns.append(Turn(pending, text))
            pending = None
    if pending is not None:
        turns.append(Turn(pending, None))
    if not turns:
        raise ValueError(f"Column {column!r} at row {label!r} has no user message.")
    return Conversation(system, tuple(turns))


def check_messages_column(series: pd.Series) -> list[Conversation]:
    """Every row of a messages column, parsed; missing cells are an error."""
    out = []
    for label, cell in zip(series.index, series.tolist(), strict=True):
        if not isinstance(cell, list | tuple | np.ndarray) and is_missing(cell):
            raise ValueError(f"Column {series.name!r} has no conversation at row {label!r}.")
        out.append(parse_conversation(cell, label, str(series.name)))
    return out


# -- rendering a conversation as one text (for embeddings) --------------------

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def _render_plain(conv: Conversation) -> str:
    parts = [f"System: {conv.system}"] if conv.system else []
    for turn in conv.turns:
        parts.append(f"User: {turn.user}")
        if turn.reply is not None:
            parts.append(f"Assistant: {turn.reply}")
    return "\n\n".join(parts)


def _render_vicuna(conv: Conversation) -> str:
    # DEITA's embedder default (vicuna_v1.1, separator style "add colon two"):
    # system, " ", then "USER: q ASSISTANT: a</s>" per turn; a trailing user
    # message ends with " ".
    text = (conv.system if conv.system is not None else _VICUNA_SYSTEM) + " "
    for turn in conv.turns:
        text += f"USER: {turn.user} "
        if turn.reply is not None:
            text += f"ASSISTANT: {turn.reply}</s>"
    return text


CONVERSATION_TEMPLATES = {"plain": _render_plain, "vicuna_v1.1": _render_vicuna}


def render_conversation(conv: Conversation, template: str) -> str:
    """One text for a whole conversation, identical for both layouts."""
    return CONVERSATION_TEMPLATES[template](conv)
