"""space.yaml <-> SageMaker `CreateHyperParameterTuningJob` request, as pure functions.

`to_request(spec)` gives the request and a report: one line per thing SageMaker cannot take
as it is (a local path, an hpt-only strategy, a missing image or role), each exported as an
explicit REPLACE-ME placeholder or the nearest SageMaker setting. What only hpt knows is also
kept in the request's `Tags` (`hpt:<field>`), so `from_request` restores the space exactly;
a request written by hand or by SageMaker's SDK imports too, with a report of what hpt had
to assume.

Categorical values travel as strings; on import a list whose values all read as integers
becomes integers, else all numbers -> floats, all true/false -> booleans, else strings.
Static hyperparameters are JSON-encoded strings, as SageMaker's framework estimators send
them (the toolkit json.loads each back).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpt.sagemaker_names import (MODE_SWITCHES, MPI_PROCESSES_PER_HOST,
                                 distribution_hyperparameters, distribution_mode)
from hpt.schedule.rules import RULES
from hpt.search.strategies import STRATEGIES as STRATEGY_REGISTRY

PLACEHOLDER = "REPLACE-ME"
IMAGE_PLACEHOLDER = f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{PLACEHOLDER.lower()}:latest"
ROLE_PLACEHOLDER = f"arn:aws:iam::000000000000:role/{PLACEHOLDER}"
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
VOLUME_GB = 30

# hpt's names -> SageMaker's, from the registries (a strategy or rule SageMaker does not
# have is exported as its nearest and kept in the tags).
STRATEGIES = {name: s.sagemaker for name, s in STRATEGY_REGISTRY.items() if s.sagemaker}
EARLY_STOPPING = {name: r.sagemaker for name, r in RULES.items() if r.sagemaker}
SCALINGS = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic",
            "reverse_log": "ReverseLogarithmic"}
WARM_START = {"identical_data_and_algorithm": "IdenticalDataAndAlgorithm",
              "transfer_learning": "TransferLearning"}
TAG = "hpt:"


def _reverse(mapping: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in mapping.items()}


def _number_text(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _relative(path: Path | str, base: Path) -> str:
    return os.path.relpath(Path(path), base)


# -- export --------------------------------------------------------------------------------

def to_request(spec) -> tuple[dict[str, Any], list[str]]:
    """The CreateHyperParameterTuningJob request for a loaded Spec, and the report."""
    base = Path(spec.source_path).parent
    report: list[str] = []
    tags: dict[str, str] = {}
    trainer = spec.trainer

    strategy = STRATEGIES.get(spec.strategy)
    if strategy is None:
        strategy = "Bayesian"
        tags["strategy"] = spec.strategy
        report.append(f"strategy: {spec.strategy} has no SageMaker equivalent; exported as "
                      f"Bayesian")
    config: dict[str, Any] = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {
            "Type": "Maximize" if spec.objective.type == "maximize" else "Minimize",
            "MetricName": spec.objective.metric},
        "ResourceLimits": {"MaxParallelTrainingJobs": spec.limits.max_parallel},
        "ParameterRanges": _ranges(spec.hyperparameters),
        "RandomSeed": spec.seed,
    }
    if spec.limits.max_trials is not None:
        config["ResourceLimits"]["MaxNumberOfTrainingJobs"] = spec.limits.max_trials
    if spec.limits.max_runtime_seconds is not None:
        config["ResourceLimits"]["MaxRuntimeInSeconds"] = spec.limits.max_runtime_seconds
    strategy_config = dict(spec.strategy_config)
    hyperband = {k: strategy_config.pop(k) for k in ("min_resource", "max_resource")
                 if k in strategy_config}
    if hyperband and spec.strategy == "hyperband":
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {
            "MinResource": int(hyperband["min_resource"]) if "min_resource" in hyperband else 1,
            "MaxResource": int(hyperband["max_resource"]) if "max_resource" in hyperband else 1}}
    elif hyperband:
        strategy_config.update(hyperband)
    for key, value in sorted(strategy_config.items()):
        tags[f"strategy_config.{key}"] = _number_text(value)
        report.append(f"strategy_config.{key}: hpt-only ({value!r}); kept in the tags only")
    if spec.early_stopping not in EARLY_STOPPING:
        tags["early_stopping"] = spec.early_stopping
        report.append(f"early_stopping: {spec.early_stopping} has no SageMaker equivalent; "
                      f"exported as Auto (SageMaker's median rule)")
    config["TrainingJobEarlyStoppingType"] = EARLY_STOPPING.get(spec.early_stopping, "Auto")
    completion = _completion(spec.completion)
    if completion:
        config["TuningJobCompletionCriteria"] = completion

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
    for field in ("cpus_per_host", "gpus_per_host"):
        value = getattr(trainer, field)
        default = 1.0 if field == "cpus_per_host" else 0.0
        if value != default:
            tags[field] = _number_text(value)
    if trainer.warm_start:
        tags["warm_interpreter"] = "true"
    if spec.runtime != "local":
        tags["runtime"] = spec.runtime
    if spec.prepare:
        tags["prepare"] = " ".join(spec.prepare)
    request: dict[str, Any] = {
        "HyperParameterTuningJobName": spec.name,
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
    }
    if spec.warm_start:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": p}
                                               for p in spec.warm_start.parents],
            "WarmStartType": WARM_START[spec.warm_start.type]}
    if tags:
        request["Tags"] = [{"Key": TAG + k, "Value": v} for k, v in tags.items()]
    return request, report


def _ranges(hyperparameters) -> dict[str, list]:
    out: dict[str, list] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                            "CategoricalParameterRanges": []}
    for name, rng in hyperparameters.items():
        if rng.type == "categorical":
            out["CategoricalParameterRanges"].append(
                {"Name": name, "Values": [_category_text(v) for v in rng.values]})
        else:
            key = "IntegerParameterRanges" if rng.type == "integer" else "ContinuousParameterRanges"
            out[key].append({"Name": name, "MinValue": _number_text(rng.min),
                             "MaxValue": _number_text(rng.max),
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
    values["sagemaker_program"] = json.dumps(trainer.entry_point)
    values["sagemaker_submit_directory"] = json.dumps(f"s3://{PLACEHOLDER}/source/sourcedir.tar.gz")
    tags["source_dir"] = _relative(trainer.source_dir, base)
    report.append(f"trainer.source_dir: {tags['source_dir']} is local; "
                  f"sagemaker_submit_directory is a placeholder: upload it as sourcedir.tar.gz")
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
        tags[field] = _relative(uri, base) if not uri.startswith("file://") else uri
    shown = tags.get(field, "the experiment folder")
    report.append(f"{field}: {shown} is not in S3; exported as s3://{PLACEHOLDER}/{field}: "
                  f"upload {what} and set the S3 URI")
    return f"s3://{PLACEHOLDER}/{field}"


def _channel(name: str, ch, base: Path, tags: dict, report: list) -> dict[str, Any]:
    uri = ch.uri if ch.is_s3 else None
    if uri is None:
        tags[f"channels.{name}"] = _relative(ch.uri, base)
        report.append(f"channels.{name}: {tags[f'channels.{name}']} is local; exported as "
                      f"s3://{PLACEHOLDER}/channels/{name}: upload the data and set S3Uri")
        uri = f"s3://{PLACEHOLDER}/channels/{name}"
    return {"ChannelName": name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": ch.distribution}},
        "InputMode": "File"}


# -- import --------------------------------------------------------------------------------

class RequestError(ValueError):
    """A request that is not a CreateHyperParameterTuningJob request: (field path, message)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


def _need(obj: Any, key: str, path: str, kind=dict) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise RequestError(f"{path}.{key}" if path else key, "required field is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise RequestError(f"{path}.{key}" if path else key,
                           f"must be {kind.__name__ if isinstance(kind, type) else kind} "
                           f"(got {type(value).__name__})")
    return value


def _decode_category(values: list[str]) -> list[Any]:
    def all_parse(parse):
        try:
            return [parse(v) for v in values]
        except (ValueError, TypeError):
            return None

    ints = all_parse(lambda v: int(v) if str(v).lstrip("-").isdigit() else int("x"))
    if ints is not None:
        return ints
    floats = all_parse(float)
    if floats is not None:
        return floats
    if all(v in ("true", "false") for v in values):
        return [v == "true" for v in values]
    return list(values)


def _decode_number(text: str, integer: bool) -> Any:
    value = float(text)
    return int(value) if integer or (value.is_integer() and "." not in text and "e" not in
                                     text.lower()) else value


def request_problems(request: Any) -> list[str]:
    """What SageMaker itself would reject in the request's shape (botocore's own model of
    CreateHyperParameterTuningJob): one line per problem, naming the parameter."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("CreateHyperParameterTuningJob").input_shape
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
    tags = {t["Key"][len(TAG):]: t["Value"] for t in request.get("Tags", [])
            if isinstance(t, dict) and str(t.get("Key", "")).startswith(TAG)}

    statics = {k: _loads(v) for k, v in (definition.get("StaticHyperParameters") or {}).items()}
    entry_point = statics.pop("sagemaker_program", None)
    statics.pop("sagemaker_submit_directory", None)
    distribution = distribution_mode(statics)
    for switch in MODE_SWITCHES.values():
        statics.pop(switch, None)
    processes = statics.pop(MPI_PROCESSES_PER_HOST, None)
    for key in [k for k in statics if k.startswith("sagemaker_")]:
        report.append(f"StaticHyperParameters.{key}: a SageMaker switch hpt does not use; "
                      f"dropped")
        statics.pop(key)
    if entry_point is None:
        entry_point = "train.py"
        report.append("StaticHyperParameters.sagemaker_program: missing; entry_point set to "
                      "train.py: fix it")
    if "source_dir" not in tags:
        report.append("trainer.source_dir: not in the request (SageMaker ships code in the "
                      "image or sagemaker_submit_directory); set to '.': fix it")

    algorithm = _need(definition, "AlgorithmSpecification", "TrainingJobDefinition", dict)
    resources = definition.get("ResourceConfig") or {}
    trainer: dict[str, Any] = {"source_dir": tags.get("source_dir", "."),
                               "entry_point": entry_point}
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

    space: dict[str, Any] = {"name": name}
    if "prepare" in tags:
        space["prepare"] = tags["prepare"].split(" ")
    space["trainer"] = trainer
    channels = {}
    for i, ch in enumerate(definition.get("InputDataConfig") or []):
        s3 = ((ch.get("DataSource") or {}).get("S3DataSource") or {})
        cname = ch.get("ChannelName", f"channel{i}")
        uri = tags.get(f"channels.{cname}", s3.get("S3Uri"))
        distribution_type = s3.get("S3DataDistributionType", "FullyReplicated")
        channels[cname] = uri if distribution_type == "FullyReplicated" else {
            "uri": uri, "distribution": distribution_type}
    if channels:
        space["channels"] = channels
    output = tags.get("output") or (definition.get("OutputDataConfig") or {}).get("S3OutputPath")
    if output and not output.startswith(f"s3://{PLACEHOLDER}"):
        space["output"] = output
    if statics:
        space["static_hyperparameters"] = statics
    space["hyperparameters"] = _import_ranges(config.get("ParameterRanges") or
                                              definition.get("HyperParameterRanges") or {})
    objective = config.get("HyperParameterTuningJobObjective") or \
        definition.get("TuningObjective")
    if not isinstance(objective, dict):
        raise RequestError("HyperParameterTuningJobConfig.HyperParameterTuningJobObjective",
                           "required field is missing")
    space["objective"] = {"metric": _need(objective, "MetricName", "...Objective", str),
                          "type": "maximize" if objective.get("Type") == "Maximize"
                          else "minimize"}
    space["metric_definitions"] = [{"name": m["Name"], "regex": m["Regex"]}
                                   for m in algorithm.get("MetricDefinitions") or []]
    strategy = tags.get("strategy") or _reverse(STRATEGIES).get(config.get("Strategy"), "bayesian")
    space["strategy"] = strategy
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
        space["strategy_config"] = strategy_config
    space["early_stopping"] = tags.get("early_stopping") or _reverse(EARLY_STOPPING).get(
        config.get("TrainingJobEarlyStoppingType"), "off")
    limits_in = _need(config, "ResourceLimits", "HyperParameterTuningJobConfig", dict)
    limits = {}
    if "MaxNumberOfTrainingJobs" in limits_in:
        limits["max_trials"] = int(limits_in["MaxNumberOfTrainingJobs"])
    limits["max_parallel"] = int(limits_in.get("MaxParallelTrainingJobs", 1))
    if "MaxRuntimeInSeconds" in limits_in:
        limits["max_runtime_seconds"] = int(limits_in["MaxRuntimeInSeconds"])
    space["limits"] = limits
    criteria = config.get("TuningJobCompletionCriteria") or {}
    completion: dict[str, Any] = {}
    if "TargetObjectiveMetricValue" in criteria:
        completion["target_objective"] = float(criteria["TargetObjectiveMetricValue"])
    if "BestObjectiveNotImproving" in criteria:
        completion["max_trials_not_improving"] = int(
            criteria["BestObjectiveNotImproving"]["MaxNumberOfTrainingJobsNotImproving"])
    if (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled":
        completion["convergence"] = True
    if completion:
        space["completion"] = completion
    warm = request.get("WarmStartConfig")
    if warm:
        space["warm_start"] = {
            "parents": [p["HyperParameterTuningJobName"]
                        for p in warm.get("ParentHyperParameterTuningJobs", [])],
            "type": _reverse(WARM_START).get(warm.get("WarmStartType"),
                                             "identical_data_and_algorithm")}
    if "RandomSeed" in config:
        space["seed"] = int(config["RandomSeed"])
    space["runtime"] = tags.get("runtime", "local")
    return space, report


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
                              "scaling": _reverse(SCALINGS).get(r.get("ScalingType", "Auto"),
                                                                "auto")}
            if not integer:
                out[r["Name"]]["min"] = float(r["MinValue"])
                out[r["Name"]]["max"] = float(r["MaxValue"])
    for r in ranges.get("CategoricalParameterRanges") or []:
        out[r["Name"]] = {"type": "categorical", "values": _decode_category(r["Values"])}
    return out
