"""The report's "Still to run": what a preset's grid (the raw model's, by default) still lacks in a results dict."""

from __future__ import annotations

from analysis.reproduce.config import GEMMA, ReproConfig

#: the settings a task's records must share with the grid's preset to count as its cell
PRESET_FIELDS = ("steps", "n_train", "eval_n", "max_length", "batch_size")


def missing_lines(res: dict, preset: ReproConfig = GEMMA) -> list[str]:
    """What ``preset``'s grid still lacks in ``res``: one line per task, and one for full fine-tuning.

    A task is missing when it has no training run; a present one lists the (strategy, k) with fewer seeds than
    the preset's. Full fine-tuning is asked on every task, or on ``preset.full_min_tasks`` of them when that is
    set: then a task without full runs is not itself missing, and a line says how many tasks still lack it.
    Nothing when ``res`` holds no record of the preset's models, or none is missing.
    """
    lines, flags = [], {}
    for model in preset.models:
        runs = [r for r in res.get("runs", []) if r["model"] == model]
        if not runs and not any(c["model"] == model for c in res.get("curves", [])):
            continue
        # the grid's precision is that of its first task run: a task in another one would not compare
        ran_in = [_settings_of(res, model, t).get("dtype") for t in preset.tasks if any(r["task"] == t for r in runs)]
        grid_dtype = next((d for d in ran_in if d), None)
        if grid_dtype and grid_dtype != "auto":
            flags[model] = f" --dtype {grid_dtype}"
        full_done = 0
        for task in preset.tasks:
            mine = [r for r in runs if r["task"] == task]
            line, counts = _task_line(res, preset, model, task, mine, grid_dtype)
            lines += [line] if line else []
            full_done += counts and _seeds(mine, "full", None) >= len(preset.seeds)
        want = preset.full_min_tasks if model not in preset.skip_full else 0
        if want and full_done < want:
            lines.append(
                f"- {model}: full fine-tuning on {full_done} of the {want} tasks it is asked on "
                f"({len(preset.seeds)} seeds each; `--skip-full {model}` leaves it out of a task)."
            )
    if not lines:
        return []
    names = ", ".join(preset.models)
    extra = "".join(dict.fromkeys(flags.values()))
    head = (
        f"The grid of {names} (`python -m analysis reproduce --model {names} --tasks T{extra}`, run one task at a "
        "time; each task's records replace only that task's) is not complete yet:"
    )
    return ["## Still to run", "", head, "", *lines, ""]


def _task_line(
    res: dict, preset: ReproConfig, model: str, task: str, mine: list[dict], grid_dtype: str | None
) -> tuple[str | None, bool]:
    """The line of one task (None: nothing missing there), and whether its records count as the grid's cell."""
    if not mine:
        return f"- {model} · {task}: not run yet.", False
    ran = _settings_of(res, model, task)
    other = [
        f"{f} {ran[f]}, not {getattr(preset, f)}"
        for f in PRESET_FIELDS
        if ran.get(f, getattr(preset, f)) != getattr(preset, f)
    ]
    if (ran.get("dtype") or "auto") != (grid_dtype or "auto"):
        other.append(f"dtype {ran.get('dtype') or 'auto'}, not {grid_dtype or 'auto'} as the grid's first task")
    if other:
        return f"- {model} · {task}: run with other settings than the grid's ({', '.join(other)}).", False
    want: list[tuple[str, int | None]] = [(s, k) for s in ("variability", "top") for k in preset.ks_for(model)]
    if model not in preset.skip_full and not preset.full_min_tasks:
        want.append(("full", None))
    n_seeds = len(preset.seeds)
    short = [
        f"{s}{'' if k is None else f' k = {k}'} ({n} of {n_seeds} seeds)"
        for s, k in want
        if (n := _seeds(mine, s, k)) < n_seeds
    ]
    return (f"- {model} · {task}: missing " + ", ".join(short) + "." if short else None), True


def _seeds(runs: list[dict], strategy: str, k: int | None) -> int:
    return len({r["seed"] for r in runs if r["strategy"] == strategy and r["k"] == k})


def _settings_of(res: dict, model: str, task: str) -> dict:
    from analysis.reproduce.run import settings_for

    try:
        return settings_for(res, model, task)
    except StopIteration:  # records without a part (hand-made): nothing to compare
        return {}
