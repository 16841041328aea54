"""Progress bars that are on for terminals, off when asked or when piped."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def progress_enabled(show: bool | None) -> bool:
    """Resolve ``show_progress_bar``: None means "only on a terminal"."""
    if show is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(show)


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool | None):
    """A tqdm bar when enabled and tqdm is installed, else a silent stand-in."""
    if not progress_enabled(enabled):
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with the model extras, not the core
        yield _NoBar()
        return
    with tqdm(total=total, desc=desc, unit="row", leave=False) as bar:
        yield bar
