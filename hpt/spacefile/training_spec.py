"""One training job on its own (SageMaker's CreateTrainingJob, which `hpt api` serves): the
part of a space that a runtime's job reads, without what only a tuning job has.

A `Spec` is a tuning job: ranges to search and an objective to rank its jobs by. A training
job has neither: it runs its script once with the hyperparameters it was given, its metric
definitions only describe what it prints (none need appear for it to complete), and its name
is the TrainingJobName asked for (up to 63 characters). The runtimes read the same fields of
either (trainer, channels, output, static hyperparameters, metric definitions, name,
runtime); `objective` is None here and `all_objectives` empty, which they take as "nothing
to stream, nothing required".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError

from hpt.core import sagemaker_names as sm
from hpt.core.checks import refused_by
from hpt.spacefile.fields import SpecModel, show
from hpt.spacefile.messages import problems_from_error
from hpt.spacefile.model import Channels, Runtime, StaticHyperparameters, Trainer, _abs_path, \
    _output
from hpt.spacefile.objective_models import MetricDefinition


def training_job_name_problem(value: Any) -> str | None:
    """Why `value` is not a valid TrainingJobName, or None."""
    if not isinstance(value, str) or not value or len(value) > sm.TRAINING_JOB_NAME_MAX or \
            not sm.TUNING_JOB_NAME.match(value):
        return (f"must be 1-{sm.TRAINING_JOB_NAME_MAX} letters, digits and inner hyphens "
                f"(got {show(value)})")
    return None


class TrainingJobSpec(SpecModel):
    """A validated training job: build it with `training_job_spec`."""

    name: Annotated[str, BeforeValidator(refused_by(training_job_name_problem))]
    trainer: Trainer
    channels: Channels = Field(default_factory=dict)
    output: Annotated[str | None, BeforeValidator(_output)] = None
    static_hyperparameters: StaticHyperparameters = Field(default_factory=dict)
    metric_definitions: list[MetricDefinition] = Field(default_factory=list)
    runtime: Runtime = "local"
    source_path: Annotated[Path, BeforeValidator(_abs_path)]

    @property
    def objective(self) -> None:
        """No objective: a training job is not ranked against others."""
        return None

    @property
    def all_objectives(self) -> tuple:
        return ()

    def to_frozen_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_frozen_dict(cls, data: dict[str, Any]) -> TrainingJobSpec:
        return cls.model_validate(data)


def training_job_spec(values: dict[str, Any], source_path: Path) -> TrainingJobSpec:
    """The spec of `values` (a space-like dict); ValueError naming each field's problem."""
    try:
        return TrainingJobSpec.model_validate({**values, "source_path": source_path},
                                              context={"base_dir": Path(source_path).parent})
    except ValidationError as exc:
        found = problems_from_error(exc, TrainingJobSpec)
        raise ValueError("; ".join(f"{'.'.join(map(str, path))}: {message}"
                                   for path, message in found)) from None
