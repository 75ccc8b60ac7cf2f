"""ν without holding the states: running statistics (stats), two passes over a file (twopass), the pass itself,
sharded over torchrun's processes (curve), streamed curves in the cache (curvecache), the rows a stream keeps
(kept) and handing freed heap back (memtrim)."""
