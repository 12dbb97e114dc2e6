"""Photos to vectors: walk a folder, align each face, embed it, write a vector database."""

from fvr_audit.extraction.discover import ImageRecord, discover_images
from fvr_audit.extraction.pipeline import EmbeddingRun, embed_records

__all__ = ["EmbeddingRun", "ImageRecord", "discover_images", "embed_records"]
