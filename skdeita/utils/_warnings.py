"""Warnings that point at the user's line, not at skdeita or scikit-learn."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside skdeita and
    scikit-learn (whose wrappers sit between the user and our code)."""
    import sklearn

    internal = (_PACKAGE_DIR, os.path.dirname(os.path.abspath(sklearn.__file__)))
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is our caller
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
