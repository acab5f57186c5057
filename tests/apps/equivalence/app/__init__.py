"""Equivalence: a small FastAPI app that converts quantities between units, with an RQ worker."""
