"""Embeddings per row: EmbeddingTransformer and its model backends."""

from ._transformer import EmbeddingTransformer

__all__ = ["EmbeddingTransformer"]
