"""The on-disk cache (cache) and the atomic writes every output goes through (atomic)."""
