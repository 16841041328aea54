"""What a command prints on stderr besides its errors: every warning as one
``skdeita: warning: ...`` line, and no progress bar when bars are off (model
weight loading included)."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager

from ._terms import in_cli_terms

# Read when a process starts: the Dask workers --cluster local:N starts, and
# the engine processes of vLLM, inherit them.
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def print_warning(message, command: str | None = None) -> None:
    """One line, in command-line terms, with no Python file or line number."""
    print(f"skdeita: warning: {in_cli_terms(str(message), command)}", file=sys.stderr)


@contextmanager
def warnings_as_lines(command: str | None = None):
    """Every warning raised inside (reading, checking, running) printed by
    :func:`print_warning` as it is raised, each text once (a check and the run
    may raise the same one); the filters are Python's own, or ``-W``'s."""
    shown: set[str] = set()
    with warnings.catch_warnings():  # restores showwarning on exit

        def show(message, category, filename, lineno, file=None, line=None):
            if str(message) not in shown:
                shown.add(str(message))
                print_warning(message, command)

        warnings.showwarning = show
        yield


@contextmanager
def bars_off():
    """No progress bar of huggingface_hub (downloads) or transformers (the
    "Loading weights" bars), here or in a process started inside; the state
    before is restored after, so an in-process caller keeps its own."""
    saved_env = {name: os.environ.get(name) for name in _QUIET_ENV}
    hub = _hub_utils()
    hub_was_off = hub.are_progress_bars_disabled() if hub is not None else None
    tf_logging = sys.modules.get("transformers.utils.logging")
    tf_was_on = tf_logging.is_progress_bar_enabled() if tf_logging is not None else None
    # transformers takes its initial state from huggingface_hub's when first
    # imported, so a model loaded inside gets no bar either.
    if hub is not None:
        hub.disable_progress_bars()
    if tf_logging is not None:
        tf_logging.disable_progress_bar()
    os.environ.update(_QUIET_ENV)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tf_logging = sys.modules.get("transformers.utils.logging")
        if tf_logging is not None and (tf_was_on or (tf_was_on is None and not hub_was_off)):
            tf_logging.enable_progress_bar()  # (it turns huggingface_hub's on too)
        if hub is not None:
            hub.disable_progress_bars() if hub_was_off else hub.enable_progress_bars()


def _hub_utils():
    try:
        import huggingface_hub.utils as hub
    except ImportError:  # a core install: no model, no bar
        return None
    return hub
