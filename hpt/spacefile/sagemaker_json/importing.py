"""A CreateHyperParameterTuningJob request -> the space.yaml (a dict, in interface order) and
the report of what hpt had to assume (see __init__.py); a CreateTrainingJob request -> a
training job's space (`training_job_space`)."""

from __future__ import annotations

import json
from typing import Any

from hpt.core.sagemaker_names import (FULLY_REPLICATED, MODE_SWITCHES, MPI_PROCESSES_PER_HOST,
                                      RESERVED_PREFIX, SAGEMAKER_PROGRAM,
                                      SAGEMAKER_SUBMIT_DIRECTORY, distribution_mode,
                                      service_model)
from hpt.core.schema import Column
from hpt.spacefile.sagemaker_json.names import (EARLY_STOPPING, IMAGE_PLACEHOLDER,
                                           SCALINGS, STRATEGIES, WARM_START, hpt_tags,
                                           is_placeholder, reverse)


class RequestError(ValueError):
    """A request that is not a CreateHyperParameterTuningJob request: (field path, message)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


def request_problems(request: Any) -> list[str]:
    """What SageMaker itself would reject in the request's shape (botocore's own model of
    CreateHyperParameterTuningJob): one line per problem, naming the parameter."""
    from botocore.validate import ParamValidator

    shape = service_model("sagemaker").operation_model("CreateHyperParameterTuningJob").input_shape
    if not isinstance(request, dict):
        return [f"(top level): must be a JSON object (got {type(request).__name__})"]
    report = ParamValidator().validate(request, shape)
    if not report.has_errors():
        return []
    lines = [ln for ln in report.generate_report().splitlines()
             if ln.strip() != "Parameter validation failed:"]
    return [line if len(line) <= 300 else line[:297] + "..." for line in lines if line.strip()]


def from_request(request: Any) -> tuple[dict[str, Any], list[str]]:
    """The space.yaml (as a dict, in interface order) for a request, and the report."""
    report: list[str] = []
    if not isinstance(request, dict):
        raise RequestError("(top level)", f"must be a JSON object (got {type(request).__name__})")
    name = _need(request, "HyperParameterTuningJobName", "", str)
    config = _need(request, "HyperParameterTuningJobConfig", "", dict)
    definition = _definition_of(request, report)
    tags = hpt_tags(request)
    statics = {k: _loads(v) for k, v in (definition.get("StaticHyperParameters") or {}).items()}
    space: dict[str, Any] = {"name": name}
    if "prepare" in tags:
        space["prepare"] = _argv(tags["prepare"])
    if "tracking" in tags:
        space["tracking"] = _loads(tags["tracking"])
    space["trainer"] = _trainer(definition, statics, tags, report)
    channels = _channels(definition, tags)
    if channels:
        space["channels"] = channels
    # A local path in the tags stands in for the placeholder export wrote; a real S3 URI put
    # in its place wins.
    output = (definition.get("OutputDataConfig") or {}).get("S3OutputPath")
    output = tags.get("output") if is_placeholder(output) else output
    if output and not is_placeholder(output):
        space["output"] = output
    if statics:
        space["static_hyperparameters"] = statics
    space["hyperparameters"] = _import_ranges(config.get("ParameterRanges") or
                                              definition.get("HyperParameterRanges") or {})
    space.update(objective_of(config, definition))
    space.update(_search(config, tags))
    space["limits"] = _limits(config)
    completion = _completion(config.get("TuningJobCompletionCriteria") or {})
    if completion:
        space["completion"] = completion
    warm = request.get("WarmStartConfig")
    if warm:
        space["warm_start"] = {
            "parents": [p["HyperParameterTuningJobName"]
                        for p in warm.get("ParentHyperParameterTuningJobs", [])],
            "type": reverse(WARM_START).get(warm.get("WarmStartType"),
                                            "identical_data_and_algorithm")}
    if "RandomSeed" in config:
        space["seed"] = int(config["RandomSeed"])
    space["runtime"] = tags.get("runtime", "local")
    return space, report


def training_job_space(request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields of a CreateTrainingJob request as a training job's space (TrainingJobSpec:
    no ranges, no objective), and the report: the same reading of the trainer, channels and
    output as a tuning job's definition."""
    report: list[str] = []
    tags = hpt_tags(request)
    statics = {k: _loads(v) for k, v in (request.get("HyperParameters") or {}).items()}
    space: dict[str, Any] = {"name": _need(request, Column.TRAINING_JOB_NAME, "", str),
                             "trainer": _trainer(request, statics, tags, report)}
    channels = _channels(request, tags)
    if channels:
        space["channels"] = channels
    output = (request.get("OutputDataConfig") or {}).get("S3OutputPath")
    if output and not is_placeholder(output):
        space["output"] = output
    space["static_hyperparameters"] = statics
    algorithm = request.get("AlgorithmSpecification") or {}
    space["metric_definitions"] = [{"name": m["Name"], "regex": m["Regex"]}
                                   for m in algorithm.get("MetricDefinitions") or []]
    space["runtime"] = tags.get("runtime", "local")
    return space, report


def _definition_of(request: dict, report: list) -> dict[str, Any]:
    definition = request.get("TrainingJobDefinition")
    if definition is None:
        many = request.get("TrainingJobDefinitions") or []
        if not many:
            raise RequestError("TrainingJobDefinition", "required field is missing")
        definition = many[0]
        report.append(f"TrainingJobDefinitions: {len(many)} definitions; hpt runs one "
                      f"trainer per tuning job, the first was imported")
    if not isinstance(definition, dict):
        raise RequestError("TrainingJobDefinition", "must be an object")
    return definition


def _trainer(definition: dict, statics: dict, tags: dict, report: list) -> dict[str, Any]:
    """The trainer section; takes SageMaker's own keys out of `statics`."""
    entry_point = statics.pop(SAGEMAKER_PROGRAM, None)
    statics.pop(SAGEMAKER_SUBMIT_DIRECTORY, None)
    distribution = distribution_mode(statics)
    for switch in MODE_SWITCHES.values():
        statics.pop(switch, None)
    processes = statics.pop(MPI_PROCESSES_PER_HOST, None)
    for key in [k for k in statics if k.startswith(RESERVED_PREFIX)]:
        report.append(f"StaticHyperParameters.{key}: a SageMaker switch hpt does not use; "
                      f"dropped")
        statics.pop(key)
    algorithm = _need(definition, "AlgorithmSpecification", "TrainingJobDefinition", dict)
    # A training job's request carries them in its AlgorithmSpecification; a tuning job's
    # definition has no such field, so hpt's export keeps them in its tags.
    commands = {field: algorithm.get(key) or _loads(tags.get(field)) for field, key in (
        ("container_entrypoint", "ContainerEntrypoint"),
        ("container_arguments", "ContainerArguments"))}
    commands = {field: value for field, value in commands.items() if value}
    if entry_point is None:
        entry_point = "train.py"
        if not commands:  # the container's command says what runs
            report.append("StaticHyperParameters.sagemaker_program: missing; entry_point set "
                          "to train.py: fix it")
    if "source_dir" not in tags:
        report.append("trainer.source_dir: not in the request (SageMaker ships code in the "
                      "image or sagemaker_submit_directory); set to '.': fix it")
    resources = resource_config(definition)
    trainer: dict[str, Any] = {"source_dir": tags.get("source_dir", "."),
                               "entry_point": entry_point, **commands}
    image = algorithm.get("TrainingImage")
    if image and image != IMAGE_PLACEHOLDER:
        trainer["image"] = image
    trainer["instance_count"] = int(resources.get("InstanceCount", 1))
    trainer["instance_type"] = tags.get("instance_type", resources.get("InstanceType", "local"))
    for field in ("cpus_per_host", "gpus_per_host"):
        if field in tags:
            trainer[field] = _decode_number(tags[field], False)
    if processes is not None or "processes_per_host" in tags:
        trainer["processes_per_host"] = int(processes or tags["processes_per_host"])
    if tags.get("warm_interpreter") == "true":
        trainer["warm_start"] = True
    trainer["distribution"] = distribution
    stopping = definition.get("StoppingCondition") or {}
    if "MaxRuntimeInSeconds" in stopping:
        trainer["max_runtime_seconds"] = int(stopping["MaxRuntimeInSeconds"])
    if definition.get("Environment"):
        trainer["environment"] = dict(definition["Environment"])
    return trainer


def resource_config(definition: dict) -> dict[str, Any]:
    """The definition's ResourceConfig, or the HyperParameterTuningResourceConfig the SDK
    sends instead (its InstanceConfigs, for mixed instance types, take the first type)."""
    given = definition.get("ResourceConfig") or definition.get(
        "HyperParameterTuningResourceConfig") or {}
    resources = {k: given[k] for k in ("InstanceType", "InstanceCount", "VolumeSizeInGB")
                 if k in given}
    configs = given.get("InstanceConfigs") or []
    if configs and "InstanceType" not in resources:
        resources.update({k: configs[0][k] for k in ("InstanceType", "InstanceCount",
                                                     "VolumeSizeInGB") if k in configs[0]})
    return resources


def _channels(definition: dict, tags: dict) -> dict[str, Any]:
    channels = {}
    for i, ch in enumerate(definition.get("InputDataConfig") or []):
        s3 = ((ch.get("DataSource") or {}).get("S3DataSource") or {})
        name = ch.get("ChannelName", f"channel{i}")
        uri = s3.get("S3Uri")
        uri = tags.get(f"channels.{name}", uri) if is_placeholder(uri) else uri
        distribution_type = s3.get("S3DataDistributionType", FULLY_REPLICATED)
        channels[name] = uri if distribution_type == FULLY_REPLICATED else {
            "uri": uri, "distribution": distribution_type}
    return channels


def objective_of(config: dict, definition: dict) -> dict[str, Any]:
    objective = config.get("HyperParameterTuningJobObjective") or \
        definition.get("TuningObjective")
    if not isinstance(objective, dict):
        raise RequestError("HyperParameterTuningJobConfig.HyperParameterTuningJobObjective",
                           "required field is missing")
    algorithm = definition.get("AlgorithmSpecification") or {}
    return {"objective": {"metric": _need(objective, "MetricName", "...Objective", str),
                          "type": "maximize" if objective.get("Type") == "Maximize"
                          else "minimize"},
            "metric_definitions": [{"name": m["Name"], "regex": m["Regex"]}
                                   for m in algorithm.get("MetricDefinitions") or []]}


def _search(config: dict, tags: dict) -> dict[str, Any]:
    """strategy, strategy_config and early_stopping."""
    out: dict[str, Any] = {
        "strategy": tags.get("strategy") or reverse(STRATEGIES).get(config.get("Strategy"),
                                                                    "bayesian")}
    strategy_config: dict[str, Any] = {}
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig") or {}
    if "MinResource" in hyperband:
        strategy_config["min_resource"] = int(hyperband["MinResource"])
    if "MaxResource" in hyperband:
        strategy_config["max_resource"] = int(hyperband["MaxResource"])
    for key, value in tags.items():
        if key.startswith("strategy_config."):
            strategy_config[key.split(".", 1)[1]] = _loads(value)
    if strategy_config:
        out["strategy_config"] = strategy_config
    out["early_stopping"] = tags.get("early_stopping") or reverse(EARLY_STOPPING).get(
        config.get("TrainingJobEarlyStoppingType"), "off")
    return out


def _limits(config: dict) -> dict[str, Any]:
    given = _need(config, "ResourceLimits", "HyperParameterTuningJobConfig", dict)
    limits = {}
    if "MaxNumberOfTrainingJobs" in given:
        limits["max_trials"] = int(given["MaxNumberOfTrainingJobs"])
    limits["max_parallel"] = int(given.get("MaxParallelTrainingJobs", 1))
    if "MaxRuntimeInSeconds" in given:
        limits["max_runtime_seconds"] = int(given["MaxRuntimeInSeconds"])
    return limits


def _completion(criteria: dict) -> dict[str, Any]:
    completion: dict[str, Any] = {}
    if "TargetObjectiveMetricValue" in criteria:
        completion["target_objective"] = float(criteria["TargetObjectiveMetricValue"])
    if "BestObjectiveNotImproving" in criteria:
        completion["max_trials_not_improving"] = int(
            criteria["BestObjectiveNotImproving"]["MaxNumberOfTrainingJobsNotImproving"])
    if (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled":
        completion["convergence"] = True
    return completion


def _argv(tag: str) -> list[str]:
    """The prepare command: a JSON list (an earlier release joined it with spaces)."""
    value = _loads(tag)
    return [str(a) for a in value] if isinstance(value, list) else tag.split(" ")


def _need(obj: Any, key: str, path: str, kind=dict) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise RequestError(f"{path}.{key}" if path else key, "required field is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise RequestError(f"{path}.{key}" if path else key,
                           f"must be {kind.__name__ if isinstance(kind, type) else kind} "
                           f"(got {type(value).__name__})")
    return value


def decode_category(values: list[str]) -> list[Any]:
    """Category strings -> the values a script receives: each as the toolkit decodes a value
    of hyperparameters.json (JSON when it parses: the SageMaker SDK JSON-encodes the values
    of a framework estimator, '"adam"'; else the text itself: adam)."""
    return [_loads(v) for v in values]


def _decode_number(text: str, integer: bool) -> Any:
    value = float(text)
    return int(value) if integer or (value.is_integer() and "." not in text and "e" not in
                                     text.lower()) else value


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _import_ranges(ranges: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, integer in (("IntegerParameterRanges", True), ("ContinuousParameterRanges", False)):
        for r in ranges.get(kind) or []:
            out[r["Name"]] = {"type": "integer" if integer else "continuous",
                              "min": _decode_number(r["MinValue"], integer),
                              "max": _decode_number(r["MaxValue"], integer),
                              "scaling": reverse(SCALINGS).get(r.get("ScalingType", "Auto"),
                                                                "auto")}
            if not integer:
                out[r["Name"]]["min"] = float(r["MinValue"])
                out[r["Name"]]["max"] = float(r["MaxValue"])
    for r in ranges.get("CategoricalParameterRanges") or []:
        out[r["Name"]] = {"type": "categorical", "values": decode_category(r["Values"])}
    return out
