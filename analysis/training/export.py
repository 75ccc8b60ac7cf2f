"""A run's exports: trainable weights (safetensors), the results JSON and a PEFT LoraConfig snippet."""

from __future__ import annotations

from pathlib import Path

from analysis.errors import VariscopeError
from analysis.store.jsonio import dumps, stamp
from analysis.training.run import RunResult
from analysis.training.selection import Selection


def lora_snippet(selection: Selection, block_targets: list[str], layers_pattern: str) -> str:
    """A PEFT LoraConfig for the same layers, as Python source."""
    return (
        f"from peft import LoraConfig\n\nconfig = LoraConfig(\n    r={selection.lora_r},\n"
        f"    lora_alpha={2 * selection.lora_r},\n    lora_dropout=0.05,\n    target_modules={block_targets!r},\n"
        f"    layers_to_transform={[l - 1 for l in selection.tuned_layers]!r},  # 0-based blocks\n"
        f'    layers_pattern={layers_pattern!r},\n    bias="none",\n)\n'
        f"# classifier on layer {selection.classifier_layer}; drop blocks above it before get_peft_model\n"
    )


def _model_lora_snippet(result: RunResult, model) -> str:
    from analysis.models.layers import layer_list
    from analysis.training.model import lora_targets

    name, blocks = layer_list(model.encoder)
    return lora_snippet(result.selection, lora_targets(blocks[0]), name.rsplit(".", 1)[-1])


def artifacts(result: RunResult, model) -> dict:
    """In-memory exports of a run: ``weights`` (safetensors bytes), ``json`` and ``lora`` (Python source)."""
    from safetensors.torch import save as st_save

    from analysis.training.model import trainable_state

    return {
        "weights": st_save(trainable_state(model)),
        "json": dumps(stamp(d := result.to_dict(), device=d.get("device")), indent=2),
        "lora": _model_lora_snippet(result, model),
    }


def save_run(result: RunResult, out_dir: str, model=None, *, overwrite: bool = False) -> list[str]:
    """Write the exports into ``out_dir``: trainable.safetensors and lora_config.py (with ``model``), result.json.

    A new folder appears whole or not at all (written beside it and renamed into place). An
    existing non-empty folder is refused unless ``overwrite``; then only the run's own files are
    replaced, each atomically, and everything else in the folder is left as it is. A folder that
    cannot be written is a :class:`VariscopeError` (one line on the command line).
    """
    import os

    from analysis.store.atomic import check_output, file_mode, publish_dir, staging_dir

    out = Path(out_dir)
    check_output(out, folder=True, overwrite=overwrite, make_parents=True, what="run folder")
    names = (["trainable.safetensors", "lora_config.py"] if model is not None else []) + ["result.json"]
    try:
        art = artifacts(result, model) if model is not None else None
        with staging_dir(out.parent, prefix=f".{out.name}.staging-") as tmp:
            if art is not None:
                (tmp / "trainable.safetensors").write_bytes(art["weights"])
                (tmp / "lora_config.py").write_text(art["lora"], encoding="utf-8")
            (tmp / "result.json").write_text(
                dumps(stamp(d := result.to_dict(), device=d.get("device")), indent=2), encoding="utf-8"
            )
            if not out.exists() and publish_dir(tmp, out):
                return [str(out / n) for n in names]
            if not overwrite and any(out.iterdir()):
                raise VariscopeError(
                    f"run folder '{out_dir}' is not empty; pass --overwrite to replace the run's files"
                )
            for n in names:  # the run's own files, one rename each; other files in the folder stay
                os.chmod(tmp / n, file_mode(out / n))
                os.replace(tmp / n, out / n)
    except OSError as e:
        raise VariscopeError(f"cannot save the run to {out_dir}: {e.strerror or e}") from None
    return [str(out / n) for n in names]
