"""Layer cards: per-layer scores on pooled states (scores) and their computation from a model, cached (compute)."""
