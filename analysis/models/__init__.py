"""Language models: the offline registry and GGUF conversion, loading and layer surgery (load), tokenising and
padding (batching), one forward pass pooled per layer (hidden_states)."""
