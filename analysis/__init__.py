"""Variscope's engine: which layers of a language model are already specialised for a task.

Functions on arrays and plain dataclasses; no Streamlit here.
"""

from analysis.data.sampling import SampleConfig, sample
from analysis.data.tasks import TaskConfig, TaskData, load_task
from analysis.errors import VariscopeError
from analysis.pipeline import AnalysisConfig, StatesResult, compute_curve, get_states
from analysis.variability import CurveResult, variability, variability_curve

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
