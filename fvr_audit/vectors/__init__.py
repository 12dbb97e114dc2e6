"""Feature-vector databases: load (memory-mapped where possible), validate, summarise.

>>> from fvr_audit.vectors import load_vectors, VectorDatabase
"""

from fvr_audit.vectors.database import VectorDatabase, load_vectors

__all__ = ["VectorDatabase", "load_vectors"]
