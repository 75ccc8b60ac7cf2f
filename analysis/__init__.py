"""Variscope's engine: which layers of a language model are already specialised for a task.

Functions on arrays and plain dataclasses; no Streamlit here.
"""

from .errors import VariscopeError
from .pipeline import AnalysisConfig, StatesResult, compute_curve, get_states
from .tasks import SampleConfig, TaskConfig, TaskData, load_task, sample
from .variability import CurveResult, variability, variability_curve

__all__ = [
    "VariscopeError",
    "CurveResult",
    "variability",
    "variability_curve",
    "SampleConfig",
    "TaskConfig",
    "TaskData",
    "load_task",
    "sample",
    "AnalysisConfig",
    "StatesResult",
    "compute_curve",
    "get_states",
]
