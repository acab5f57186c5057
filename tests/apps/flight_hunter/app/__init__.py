"""Flight Hunter: a small FastAPI app that caches flight prices and sends price alerts."""
