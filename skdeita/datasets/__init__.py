"""Small datasets that ship with skdeita."""

from ._sample import load_sample

__all__ = ["load_sample"]
