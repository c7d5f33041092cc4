"""The three task types of AZR and the registry the trainer dispatches through (SPEC §1).

``TASK_TYPES[task_type]`` is a module satisfying :class:`TaskTypeModule`; stages loop over
the registry instead of branching on the type.
"""

from azr.records import TaskType
from azr.tasks import abduction, deduction, induction
from azr.tasks.base import N_INPUTS, TaskTypeModule

TASK_TYPES: dict[TaskType, TaskTypeModule] = {
    deduction.TYPE: deduction,  # type: ignore[dict-item]
    abduction.TYPE: abduction,  # type: ignore[dict-item]
    induction.TYPE: induction,  # type: ignore[dict-item]
}

__all__ = ["N_INPUTS", "TASK_TYPES", "TaskTypeModule", "abduction", "deduction", "induction"]
