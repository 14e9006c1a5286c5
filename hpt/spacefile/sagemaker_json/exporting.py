"""A loaded space -> its CreateHyperParameterTuningJob request and the report of what
SageMaker cannot take as it is (see __init__.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpt.core.errors import UserError
from hpt.core.sagemaker_names import (MPI_PROCESSES_PER_HOST, SAGEMAKER_PROGRAM,
                                      SAGEMAKER_SUBMIT_DIRECTORY, SOURCE_ARCHIVE,
                                      distribution_hyperparameters)
from hpt.schedule.rules import rule_of
from hpt.schedule.rules.asha import DEFAULT_RESOURCES
from hpt.spacefile.sagemaker_json.names import (DEFAULT_INSTANCE_TYPE, EARLY_STOPPING,
                                           IMAGE_PLACEHOLDER, PLACEHOLDER, ROLE_PLACEHOLDER,
                                           SCALINGS, STRATEGIES, TAG, VOLUME_GB, WARM_START,
                                           number_text, absolute)


class Inexpressible(UserError):
    """What SageMaker cannot express of a space, one line each (the caller names the file)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def to_request(spec, primary: str | None = None, flatten: bool = False
               ) -> tuple[dict[str, Any], list[str]]:
    """The CreateHyperParameterTuningJob request for a loaded Spec, and the report.

    SageMaker tunes one objective over flat ranges. A space with several objectives or with
    constraints exports only with `primary` (the objective SageMaker tunes; the report says
    what was dropped), a conditional one only with `flatten` (every range goes to every
    job); otherwise UserError lists, one line each, what SageMaker cannot express."""
    spec, report = _expressible(spec, primary, flatten)
    base = Path(spec.source_path).parent
    tags: dict[str, str] = {}
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": spec.name,
        "HyperParameterTuningJobConfig": _tuning_config(spec, tags, report),
        "TrainingJobDefinition": _definition(spec, base, tags, report),
    }
    if spec.warm_start:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p}
                                               for p in spec.warm_start.parents],
            "WarmStartType": WARM_START[spec.warm_start.type]}
    _hpt_only(spec, tags)
    if tags:
        request["Tags"] = [{"Key": TAG + k, "Value": v} for k, v in tags.items()]
    return request, report


def _expressible(spec, primary: str | None, flatten: bool) -> tuple[Any, list[str]]:
    """The spec as SageMaker can take it, and the report of what that dropped."""
    metrics = [o.metric for o in spec.all_objectives]
    found, report, update = [], [], {}
    if primary is not None and primary not in metrics:
        found.append(f"--primary {primary}: not an objective of this space (objectives: "
                     f"{', '.join(metrics)}); name one of them")
    elif spec.multi_objective or spec.constraints:
        if primary is None:
            if spec.multi_objective:
                found.append(f"objectives: SageMaker tunes one objective metric (got "
                             f"{len(metrics)}: {', '.join(metrics)}); export one of them with "
                             f"--primary {metrics[0]}")
            if spec.constraints:
                found.append(f"constraints: SageMaker has no constraints on metrics (got "
                             f"{', '.join(c.metric for c in spec.constraints)}); export with "
                             f"--primary {metrics[0]} to drop them")
        else:
            chosen = next(o for o in spec.all_objectives if o.metric == primary)
            update.update(objective=chosen, objectives=[], constraints=[])
            dropped = [m for m in metrics if m != primary]
            if dropped:
                report.append(f"objectives: exported the single objective {primary!r}; "
                              f"SageMaker does not tune {', '.join(map(repr, dropped))}")
            if spec.constraints:
                dropped = ", ".join(c.metric for c in spec.constraints)
                report.append(f"constraints: dropped ({dropped}); SageMaker has no constraints "
                              f"on metrics")
    conditional = [name for name, rng in spec.hyperparameters.items() if rng.when]
    if conditional and not flatten:
        found += [f"hyperparameters.{name}.when: SageMaker passes every range to every training "
                  f"job; export with --flatten to drop the condition" for name in conditional]
    elif conditional:
        update["hyperparameters"] = {name: rng.model_copy(update={"when": None})
                                     for name, rng in spec.hyperparameters.items()}
        report.append(f"hyperparameters: exported {', '.join(conditional)} without the "
                      f"when: conditions; on SageMaker every training job receives them")
    found += [f"metric_definitions[{i}] ({m.name}): a metric without regex is read from the "
              f"metrics file only; SageMaker reads metrics from the logs: print it and give "
              f"its regex" for i, m in enumerate(spec.metric_definitions) if m.regex is None]
    found += rule_of(spec.strategy, spec.early_stopping).inexpressible(spec.strategy_config)
    if found:
        raise Inexpressible(found)
    return (spec.model_copy(update=update) if update else spec), report


def _tuning_config(spec, tags: dict, report: list) -> dict[str, Any]:
    strategy = STRATEGIES.get(spec.strategy)
    if strategy is None:
        strategy = "Bayesian"
        tags["strategy"] = spec.strategy
        report.append(f"strategy: {spec.strategy} has no SageMaker equivalent; exported as "
                      f"Bayesian")
    limits = {"MaxParallelTrainingJobs": spec.limits.max_parallel}
    if spec.limits.max_trials is not None:
        limits["MaxNumberOfTrainingJobs"] = spec.limits.max_trials
    if spec.limits.max_runtime_seconds is not None:
        limits["MaxRuntimeInSeconds"] = spec.limits.max_runtime_seconds
    config: dict[str, Any] = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {
            "Type": "Maximize" if spec.objective.type == "maximize" else "Minimize",
            "MetricName": spec.objective.metric},
        "ResourceLimits": limits,
        "ParameterRanges": _ranges(spec.hyperparameters),
        "RandomSeed": spec.seed,
    }
    _strategy_config(spec, config, tags, report)
    if spec.early_stopping not in EARLY_STOPPING:
        tags["early_stopping"] = spec.early_stopping
        report.append(f"early_stopping: {spec.early_stopping} has no SageMaker equivalent; "
                      f"exported as Auto (SageMaker's median rule)")
    config["TrainingJobEarlyStoppingType"] = EARLY_STOPPING.get(spec.early_stopping, "Auto")
    completion = _completion(spec.completion)
    if completion:
        config["TuningJobCompletionCriteria"] = completion
    return config


def _strategy_config(spec, config: dict, tags: dict, report: list) -> None:
    """Hyperband's resources go to HyperbandStrategyConfig (both, as SageMaker needs them:
    one the space leaves out is the value hpt runs with); every other key is hpt-only."""
    rest = dict(spec.strategy_config)
    resources = {k: rest.pop(k) for k in DEFAULT_RESOURCES if k in rest}
    if resources and STRATEGIES.get(spec.strategy) == "Hyperband":
        chosen = {**DEFAULT_RESOURCES, **resources}
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {
            "MinResource": int(chosen["min_resource"]),
            "MaxResource": int(chosen["max_resource"])}}
    else:
        rest.update(resources)
    for key, value in sorted(rest.items()):
        tags[f"strategy_config.{key}"] = number_text(value)
        report.append(f"strategy_config.{key}: hpt-only ({value!r}); kept in the tags only")


def _definition(spec, base: Path, tags: dict, report: list) -> dict[str, Any]:
    trainer = spec.trainer
    definition = {
        "StaticHyperParameters": _static(spec, base, tags, report),
        "AlgorithmSpecification": {
            "TrainingImage": trainer.image or IMAGE_PLACEHOLDER,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": m.name, "Regex": m.regex}
                                  for m in spec.metric_definitions]},
        "RoleArn": ROLE_PLACEHOLDER,
        "OutputDataConfig": {"S3OutputPath": _s3_or_placeholder(
            spec.output, "output", base, tags, report, "the model artifacts")},
        "ResourceConfig": {"InstanceType": trainer.instance_type, "InstanceCount":
                           trainer.instance_count, "VolumeSizeInGB": VOLUME_GB},
        "StoppingCondition": {"MaxRuntimeInSeconds": trainer.max_runtime_seconds},
    }
    if not trainer.image:
        report.append(f"trainer.image: not set; TrainingImage is a placeholder "
                      f"({IMAGE_PLACEHOLDER}): set the image of your training container")
    report.append(f"RoleArn: hpt has no IAM role; exported as {ROLE_PLACEHOLDER}")
    if trainer.instance_type == "local":
        definition["ResourceConfig"]["InstanceType"] = DEFAULT_INSTANCE_TYPE
        tags["instance_type"] = "local"
        report.append(f"trainer.instance_type: local is not a SageMaker instance type; "
                      f"exported as {DEFAULT_INSTANCE_TYPE}")
    channels = [_channel(name, ch, base, tags, report) for name, ch in spec.channels.items()]
    if channels:
        definition["InputDataConfig"] = channels
    if trainer.environment:
        definition["Environment"] = dict(trainer.environment)
    return definition


def _hpt_only(spec, tags: dict) -> None:
    """What SageMaker has no field for, in the tags."""
    trainer = spec.trainer
    for field, default in (("cpus_per_host", 1.0), ("gpus_per_host", 0.0)):
        if getattr(trainer, field) != default:
            tags[field] = number_text(getattr(trainer, field))
    if trainer.warm_start:
        tags["warm_interpreter"] = "true"
    # A tuning job's training job definition has no ContainerEntrypoint (a training job's
    # has: runtime: sagemaker sends it there).
    for field in ("container_entrypoint", "container_arguments"):
        if getattr(trainer, field):
            tags[field] = json.dumps(getattr(trainer, field))
    if spec.runtime != "local":
        tags["runtime"] = spec.runtime
    if spec.prepare:  # an argv (its words may hold spaces), run in the space's folder: the
        # words that name a file or folder there are made absolute, as the other paths are.
        base = Path(spec.source_path).parent
        tags["prepare"] = json.dumps([absolute(word, base) if i and (base / word).exists()
                                      else word for i, word in enumerate(spec.prepare)])
    if spec.tracking.mlflow is not None:
        tags["tracking"] = json.dumps(spec.tracking.model_dump(exclude_none=True))


def _ranges(hyperparameters) -> dict[str, list]:
    out: dict[str, list] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                            "CategoricalParameterRanges": []}
    for name, rng in hyperparameters.items():
        if rng.type == "categorical":
            out["CategoricalParameterRanges"].append(
                {"Name": name, "Values": [_category_text(v) for v in rng.values]})
        else:
            key = "IntegerParameterRanges" if rng.type == "integer" else "ContinuousParameterRanges"
            out[key].append({"Name": name, "MinValue": number_text(rng.min),
                             "MaxValue": number_text(rng.max),
                             "ScalingType": SCALINGS[rng.scaling]})
    return {k: v for k, v in out.items() if v}


def _category_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _completion(c) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.target_objective is not None:
        out["TargetObjectiveMetricValue"] = float(c.target_objective)
    if c.max_trials_not_improving is not None:
        out["BestObjectiveNotImproving"] = {
            "MaxNumberOfTrainingJobsNotImproving": c.max_trials_not_improving}
    if c.convergence:
        out["ConvergenceDetected"] = {"CompleteOnConvergence": "Enabled"}
    return out


def _static(spec, base: Path, tags: dict, report: list) -> dict[str, str]:
    trainer = spec.trainer
    values = {k: json.dumps(v) for k, v in spec.static_hyperparameters.items()}
    values[SAGEMAKER_PROGRAM] = json.dumps(trainer.entry_point)
    values[SAGEMAKER_SUBMIT_DIRECTORY] = json.dumps(f"s3://{PLACEHOLDER}/source/{SOURCE_ARCHIVE}")
    tags["source_dir"] = absolute(trainer.source_dir, base)
    report.append(f"trainer.source_dir: {tags['source_dir']} is local; "
                  f"sagemaker_submit_directory is a placeholder: upload it as {SOURCE_ARCHIVE}")
    switches = distribution_hyperparameters(trainer.distribution, trainer.processes_per_host)
    values.update({key: json.dumps(value) for key, value in switches.items()})
    if MPI_PROCESSES_PER_HOST not in switches and trainer.processes_per_host != 1:
        tags["processes_per_host"] = str(trainer.processes_per_host)
    return values


def _s3_or_placeholder(uri: str | None, field: str, base: Path, tags: dict, report: list,
                       what: str) -> str:
    if uri and uri.startswith("s3://"):
        return uri
    if uri:
        tags[field] = absolute(uri, base) if not uri.startswith("file://") else uri
    shown = tags.get(field, "the experiment folder")
    report.append(f"{field}: {shown} is not in S3; exported as s3://{PLACEHOLDER}/{field}: "
                  f"upload {what} and set the S3 URI")
    return f"s3://{PLACEHOLDER}/{field}"


def _channel(name: str, ch, base: Path, tags: dict, report: list) -> dict[str, Any]:
    uri = ch.uri if ch.is_s3 else None
    if uri is None:
        tags[f"channels.{name}"] = absolute(ch.uri, base)
        report.append(f"channels.{name}: {tags[f'channels.{name}']} is local; exported as "
                      f"s3://{PLACEHOLDER}/channels/{name}: upload the data and set S3Uri")
        uri = f"s3://{PLACEHOLDER}/channels/{name}"
    return {"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": ch.distribution}},
        "InputMode": "File"}
