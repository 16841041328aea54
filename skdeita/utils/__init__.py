"""Helpers shared by every family: validation, warnings, progress bars,
optional imports and the per-process model cache. Private: import the
public API from :mod:`skdeita`."""
