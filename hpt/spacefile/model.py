"""The normalized space.yaml model (pydantic v2).

Field-level rules live here, so a model built any way (the loader, `Spec.from_frozen_dict`,
SageMaker import) holds only valid values. Rules that span sections (objective vs metric
definitions, grid size, static vs tuned names) and the file-system checks are the loader's
(`hpt.spacefile.load`). Relative paths resolve against `context={"base_dir": ...}` when given,
else the working directory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, model_validator

from hpt.core import sagemaker_names as sm
from hpt.core.sagemaker_names import FULLY_REPLICATED
from hpt.runtime import runtimes as runtime_registry
from hpt.schedule import rules as rule_registry
from hpt.search import strategies as strategy_registry
from hpt.spacefile.fields import (URI_SCHEME, SpecModel, boolean, case_clashes, channel_name,
                                  choice, hyperparameter_name, integer, job_name,
                                  job_name_problem, local_path, mapping, number, optional,
                                  problem, problems, refused_by, show, static_value_problem,
                                  text, uri)
from hpt.spacefile.strategy_config import check_strategy_config
from hpt.spacefile.ranges import (CategoricalRange, ContinuousRange, IntegerRange,  # noqa: F401
                                  Range)
from hpt.spacefile.objective_models import (Constraint, Constraints,  # noqa: F401
                                            MetricDefinition, MetricDefinitions, Objective,
                                            Objectives)

DISTRIBUTIONS = sm.DISTRIBUTION_MODES
CHANNEL_DISTRIBUTIONS = sm.DISTRIBUTION_TYPES
MAX_WARM_START_PARENTS = 5
MAX_SEED = 2**32 - 1  # numpy/Optuna seeds are 32-bit


# -- trainer ----------------------------------------------------------------------------------

def _source_dir(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise problem(f"must be the path of the folder with your training code "
                      f"(got {show(value)}); e.g. source_dir: ../trainers/cnn")
    if URI_SCHEME.match(value) and not value.startswith("file://"):
        raise problem(f"must be a local folder (got {show(value)}); download the code and "
                      f"point source_dir at it")
    return local_path(value.removeprefix("file://"), info)


def _entry_point(value: Any) -> str:
    text(value)
    # `./train.py` is the file `train.py`: the contract's path has no '.' segments.
    value = "/".join(part for part in value.split("/") if part != ".") or value
    if sm.entry_point_problem(value):
        raise problem(f"must be a file path relative to source_dir, of letters, digits and "
                      f"'._+-' (got {show(value)}); e.g. entry_point: train.py")
    return value


def _environment(value: Any) -> dict[str, str]:
    value = mapping(value, "NAME: value", "environment: {OMP_NUM_THREADS: 2}")
    found: list = []
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not sm.ENV_NAME.match(key):
            found.append(((key,), f"is not a valid environment variable name (got {show(key)}); "
                                  f"use letters, digits and '_', not starting with a digit"))
        elif key in sm.PLATFORM_ENV or (key.startswith("SM_") and not key.startswith("SM_HP_")):
            found.append(((key,), "is set by hpt from the training contract; remove it"))
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            if not math.isfinite(item):
                found.append(((key,), f"value must be a finite number (got {show(item)}); quote it"))
                continue
            item = show(item)
        if not isinstance(item, str):
            found.append(((key,), f"value must be a string, number or bool (got {show(item)}); "
                                  f"quote it"))
        elif "\0" in item:
            found.append(((key,), "value must not contain a NUL character; remove it"))
        out[key] = item
    if found:
        raise problems(found)
    return out


def _container_command(value: Any) -> list[str] | None:
    """A list of strings (SageMaker's ContainerEntrypoint or ContainerArguments)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v and "\0" not in v for v in value):
        raise problem(f"must be a list of non-empty strings (got {show(value)}); e.g. "
                      f"[/bin/bash, /opt/ml/input/data/code/run.sh]")
    return value


def _gpus_per_host(value: Any) -> float:
    """Whole GPUs, or a fraction of one device (never more than one, never part of two)."""
    value = number(ge=0)(value)
    if value > 1 and not value.is_integer():
        raise problem(f"must be a whole number of GPUs or a fraction below 1 (got {show(value)}): "
                      f"a host holds whole devices, or a share of one; e.g. 2, or 0.25 (four "
                      f"hosts per GPU)")
    return value


class Trainer(SpecModel):
    source_dir: Annotated[Path, BeforeValidator(_source_dir)]
    entry_point: Annotated[str, BeforeValidator(_entry_point)]
    image: Annotated[str | None, BeforeValidator(optional(text))] = None
    instance_count: Annotated[int, BeforeValidator(integer(ge=1))] = 1
    instance_type: Annotated[str, BeforeValidator(text)] = "local"
    cpus_per_host: Annotated[float, BeforeValidator(number(gt=0))] = 1.0
    gpus_per_host: Annotated[float, BeforeValidator(_gpus_per_host)] = 0.0
    processes_per_host: Annotated[int, BeforeValidator(integer(ge=1))] = 1
    distribution: Annotated[Literal["none", "data_parallel", "parameter_server", "torchrun"],
                            BeforeValidator(choice(*DISTRIBUTIONS))] = "none"
    max_runtime_seconds: Annotated[int, BeforeValidator(integer(ge=1))] = 86400
    environment: Annotated[dict[str, str], BeforeValidator(_environment)] = Field(
        default_factory=dict)
    # hpt extension: fork trials from a Python that has already imported the script's modules.
    warm_start: Annotated[bool, BeforeValidator(boolean)] = False
    # SageMaker's AlgorithmSpecification.ContainerEntrypoint / ContainerArguments: what each
    # host's container runs instead of the image's `train` (the SDK 3.x ModelTrainer's way).
    container_entrypoint: Annotated[list[str] | None, BeforeValidator(_container_command)] = None
    container_arguments: Annotated[list[str] | None, BeforeValidator(_container_command)] = None


# -- channels ---------------------------------------------------------------------------------

def _channel_uri(value: Any, info: ValidationInfo) -> str:
    return uri(value, info, "train")


class Channel(SpecModel):
    uri: Annotated[str, BeforeValidator(_channel_uri)]
    distribution: Annotated[Literal["FullyReplicated", "ShardedByS3Key"],
                            BeforeValidator(choice(*CHANNEL_DISTRIBUTIONS))] = FULLY_REPLICATED

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            return {"uri": value}
        if value is None or not isinstance(value, (dict, Channel)):
            raise problem(f"must be a path, an s3:// URI or {{uri: ..., distribution: ...}} "
                          f"(got {show(value)}); e.g. ../data/train")
        return value

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


def _channels(value: Any) -> Any:
    return mapping(value, "channel name: path or s3:// URI", "channels: {train: ../data/train}")


def _no_channel_case_clash(value: dict) -> dict:
    found = case_clashes(value, "SM_CHANNEL_")
    if found:
        raise problems(found)
    return value


def _output(value: Any, info: ValidationInfo) -> str | None:
    return None if value is None else uri(value, info, "output")


# -- hyperparameters ------------------------------------------------------------------------

HyperparameterName = Annotated[str, BeforeValidator(hyperparameter_name)]


def _hyperparameters(value: Any) -> Any:
    value = mapping(value, "name: range",
                     "hyperparameters: {lr: {type: continuous, min: 0.001, max: 0.1}}")
    if not value:
        raise problem("must define at least one range to tune (got none); e.g. "
                      "lr: {type: continuous, min: 0.001, max: 0.1}")
    return value


def _no_hp_case_clash(value: dict) -> dict:
    found = case_clashes(value, "SM_HP_")
    if found:
        raise problems(found)
    return value


_static_value = refused_by(static_value_problem)


def _static_hyperparameters(value: Any) -> Any:
    return mapping(value, "name: value", "static_hyperparameters: {epochs: 8}")


# -- strategy, limits, completion, warm start -------------------------------------------------

def _strategy(value: Any) -> str:
    """One of the registered strategies (read when a space is checked: one registered since
    is a choice)."""
    return choice(*strategy_registry.STRATEGIES)(value)


def _early_stopping(value: Any) -> str:
    """One of the registered rules a space may name (not those only a strategy brings)."""
    named = tuple(name for name, rule in rule_registry.RULES.items() if not rule.strategy_only)
    if value is False:  # YAML 1.1 reads an unquoted `off` as false
        return "off"
    if value is True:
        listed = ", ".join(named[:-1]) + " or " + named[-1]
        raise problem(f"must be {listed} (got true: YAML reads an unquoted on/yes/true as "
                      f"true); write early_stopping: auto or early_stopping: asha")
    return choice(*named)(value)


class Limits(SpecModel):
    max_trials: Annotated[int | None, BeforeValidator(optional(integer(ge=1)))] = None
    max_parallel: Annotated[int, BeforeValidator(integer(ge=1))] = 1
    max_runtime_seconds: Annotated[int | None, BeforeValidator(optional(integer(ge=1)))] = None

    @model_validator(mode="after")
    def _parallel_within_trials(self) -> Limits:
        if self.max_trials is not None and self.max_parallel > self.max_trials:
            raise problems([(("max_parallel",), f"must be <= limits.max_trials (got "
                             f"{self.max_parallel} > {self.max_trials}); lower max_parallel "
                             f"or raise max_trials")])
        return self


class Completion(SpecModel):
    target_objective: Annotated[float | None, BeforeValidator(optional(number()))] = None
    max_trials_not_improving: Annotated[int | None, BeforeValidator(optional(integer(ge=1)))] = None
    convergence: Annotated[bool, BeforeValidator(boolean)] = False


def _parents(value: Any) -> list[str]:
    if isinstance(value, str):
        raise problem(f"must be a list of tuning job names (got {show(value)}); "
                      f"write parents: [{value}]")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_WARM_START_PARENTS:
        count = f"{len(value)} names" if isinstance(value, list) else show(value)
        raise problem(f"must list 1-{MAX_WARM_START_PARENTS} parent tuning job names (got "
                      f"{count}); keep at most {MAX_WARM_START_PARENTS}")
    found = []
    for i, name in enumerate(value):
        if reason := job_name_problem(name):
            found.append(((i,), reason))
        elif name in value[:i]:
            found.append(((i,), f"{name!r} is listed twice; remove one"))
    if found:
        raise problems(found)
    return value


class WarmStart(SpecModel):
    parents: Annotated[list[str], BeforeValidator(_parents)]
    type: Annotated[Literal["identical_data_and_algorithm", "transfer_learning"],
                    BeforeValidator(choice("identical_data_and_algorithm", "transfer_learning"))]


def _tracking_uri(value: Any) -> str:
    value = text(value)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("http", "https", "file", "sqlite", "postgresql", "mysql", "databricks"):
        raise problem(f"must be an MLflow tracking URI (got {show(value)}); e.g. "
                      f"uri: http://127.0.0.1:5000")
    return value


class MlflowTracking(SpecModel):
    # None: MLFLOW_TRACKING_URI (or `hpt launch --mlflow-uri`); checked when the job starts.
    uri: Annotated[str | None, BeforeValidator(optional(_tracking_uri))] = None
    # None: the job's name
    experiment: Annotated[str | None, BeforeValidator(optional(text))] = None


class Tracking(SpecModel):
    mlflow: MlflowTracking | None = None


def _prepare(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        raise problem(f"must be a command as a list of arguments (got {show(value)}); "
                      f"e.g. prepare: [python, ../scripts/prepare_data.py]")
    return [str(a) for a in value]


def _abs_path(value: Any) -> Path:
    return Path(value).absolute() if isinstance(value, (str, Path)) else value


# -- the spec ---------------------------------------------------------------------------------

Channels = Annotated[dict[Annotated[str, BeforeValidator(channel_name)], Channel],
                     BeforeValidator(_channels), AfterValidator(_no_channel_case_clash)]
StaticHyperparameters = Annotated[
    dict[HyperparameterName, Annotated[Any, BeforeValidator(_static_value)]],
    BeforeValidator(_static_hyperparameters), AfterValidator(_no_hp_case_clash)]
Hyperparameters = Annotated[dict[HyperparameterName, Range], BeforeValidator(_hyperparameters),
                            AfterValidator(_no_hp_case_clash)]
Strategy = Annotated[str, BeforeValidator(_strategy)]  # a name in hpt.search.strategies
EarlyStopping = Annotated[str, BeforeValidator(_early_stopping)]  # in hpt.schedule.rules


def _runtime(value: Any) -> str:
    # The registry as it is now, not at import: a runtime registered later is a choice too.
    return choice(*runtime_registry.RUNTIMES)(value)


Runtime = Annotated[str, BeforeValidator(_runtime)]


class Spec(SpecModel):
    """A validated, normalized space.yaml. Build it with `hpt.spacefile.load_spec`."""

    name: Annotated[str, BeforeValidator(job_name)]
    trainer: Trainer
    channels: Channels = Field(default_factory=dict)
    output: Annotated[str | None, BeforeValidator(_output)] = None
    static_hyperparameters: StaticHyperparameters = Field(default_factory=dict)
    hyperparameters: Hyperparameters
    # The objective; with `objectives:` (several), the loader sets it to the first of them,
    # which early stopping acts on and SageMaker's single-objective columns show.
    objective: Objective
    # hpt extension: multi-objective tuning (empty: a single objective).
    objectives: Objectives = Field(default_factory=list)
    # hpt extension: limits on final metric values a job must meet to be feasible.
    constraints: Constraints = Field(default_factory=list)
    metric_definitions: MetricDefinitions
    strategy: Strategy = "bayesian"
    strategy_config: Annotated[dict[str, Any], BeforeValidator(check_strategy_config)] = \
        Field(default_factory=dict)
    early_stopping: EarlyStopping = "off"
    limits: Limits = Limits()
    completion: Completion = Completion()
    warm_start: WarmStart | None = None
    seed: Annotated[int, BeforeValidator(integer(ge=0, le=MAX_SEED))] = 0
    runtime: Runtime = "local"
    # hpt extension: a command (argv, no shell) that creates missing local channels
    # (hpt.launcher.prepare).
    prepare: Annotated[list[str] | None, BeforeValidator(_prepare)] = None
    # hpt extension: where the job is also recorded (hpt/tracking).
    tracking: Tracking = Tracking()
    # Set by the loader: the absolute path of the yaml file. Not a space.yaml field.
    source_path: Annotated[Path, BeforeValidator(_abs_path)]

    @property
    def all_objectives(self) -> tuple[Objective, ...]:
        """Every objective, the first being `objective`."""
        return tuple(self.objectives) or (self.objective,)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def conditional(self) -> bool:
        """Some hyperparameter exists only for some values of another (`when:`)."""
        return any(rng.when for rng in self.hyperparameters.values())

    def to_frozen_dict(self) -> dict[str, Any]:
        """The whole normalized spec as JSON-serializable data (paths as strings)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_frozen_dict(cls, data: dict[str, Any]) -> Spec:
        """Rebuilds a spec from `to_frozen_dict()`; reads no file, checks no path."""
        return cls.model_validate(data)


# Fields a space.yaml may set (source_path is the loader's).
USER_FIELDS = tuple(name for name in Spec.model_fields if name != "source_path")
