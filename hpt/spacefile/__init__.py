"""The space.yaml model: load, validate and normalize a tuning job's definition.

    spec = load_spec("search_spaces/digits-cnn.yaml", {"limits.max_trials": 3})

Every problem in the file is reported at once (`SpecError.problems`), one line each,
naming the file, the field path and the fix.
"""

from hpt.spacefile.spec_error import SpecError
from hpt.spacefile.fields import RESERVED_HYPERPARAMETERS, is_reserved
from hpt.spacefile.load import load_spec, spec_from_dict
from hpt.spacefile.model import (CategoricalRange, Channel, Completion, ContinuousRange,
                                 IntegerRange, Limits, MetricDefinition, Objective, Spec, Trainer,
                                 WarmStart)

__all__ = [
    "load_spec", "spec_from_dict", "SpecError", "Spec", "Trainer", "Channel", "ContinuousRange",
    "IntegerRange", "CategoricalRange", "Objective", "MetricDefinition", "Limits", "Completion",
    "WarmStart", "RESERVED_HYPERPARAMETERS", "is_reserved",
]
