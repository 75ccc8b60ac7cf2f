"""Which layers a run keeps and tunes: :class:`Selection`, the paper's strategies and the baselines.

The baselines (top k layers, full fine-tuning) are built here only: the page's
"then compare with" runs, ``reproduce`` and ``train --strategy`` all call
:func:`select` (:func:`~analysis.training.run.baseline_jobs` turns a run into its baseline runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.errors import VariscopeError

STRATEGIES = ("variability", "top", "full")


@dataclass(frozen=True)
class Selection:
    """Which layers to keep and tune.

    classifier_layer : ℓ*, 1..L; blocks above it are removed.
    tuned_layers : blocks (1-based, each ≤ ℓ*) whose weights train.
    tune_embeddings : also train the embeddings (full fine-tuning).
    adapter : None (tune the blocks' weights) or "lora" (adapters on those blocks only).
    """

    classifier_layer: int
    tuned_layers: tuple[int, ...]
    tune_embeddings: bool = False
    adapter: str | None = None
    lora_r: int = 8

    def check(self, n_layers: int) -> None:
        if not 1 <= self.classifier_layer <= n_layers:
            raise VariscopeError(
                f"classifier layer {self.classifier_layer} is out of range: this model has layers 1..{n_layers}"
            )
        bad = [l for l in self.tuned_layers if not 1 <= l <= n_layers]
        if bad:
            raise VariscopeError(f"tuned layer {bad[0]} is out of range: this model has layers 1..{n_layers}")
        above = [l for l in self.tuned_layers if l > self.classifier_layer]
        if above:
            raise VariscopeError(
                f"tuned layer {above[0]} is above the classifier layer {self.classifier_layer}; "
                f"layers above ℓ* are removed"
            )
        if self.adapter not in (None, "lora"):
            raise VariscopeError(f"unknown adapter '{self.adapter}'; use lora or none")


def select(
    strategy: str,
    n_layers: int,
    k: int,
    curve: list[float] | None = None,
    *,
    adapter: str | None = None,
    lora_r: int = 8,
) -> Selection:
    """The paper's strategies: 'variability' (k layers ending at argmin ν), 'top' (top k), 'full'.

    ``adapter``/``lora_r``: "lora" puts adapters on the tuned blocks instead of tuning their weights.
    """
    from analysis.recommend import recommend_layer, top_layers, tuned_layers

    if strategy == "full":
        return Selection(n_layers, tuple(range(1, n_layers + 1)), tune_embeddings=True, adapter=adapter, lora_r=lora_r)
    if strategy == "top":
        return Selection(n_layers, tuple(top_layers(n_layers, k)), adapter=adapter, lora_r=lora_r)
    if strategy == "variability":
        if curve is None:
            raise VariscopeError("the variability strategy needs a ν curve")
        best = recommend_layer(curve)
        return Selection(best, tuple(tuned_layers(best, k)), adapter=adapter, lora_r=lora_r)
    raise VariscopeError(f"unknown strategy '{strategy}'; use one of {', '.join(STRATEGIES)}")
