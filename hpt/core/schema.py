"""hpt's names, defined once: the experiment table's columns, the journal's events and row
keys, and the files of an experiment folder (the model: Ray Tune's `tune/result.py`).

Every writer and reader imports these; tests/test_schema.py fails when a module of `hpt/`
spells one of them as a string literal. SageMaker's own reserved names (hyperparameter keys,
channel distributions, archive names) live in `hpt.core.sagemaker_names`; a training job's
statuses and Tune's result keys in `hpt.core.trial`.

The rule for SageMaker's API: the table's columns are SageMaker's words (the analytics
columns are DescribeTrainingJob's and TrainingJobSummary's fields), so an API shape that
uses the same word (`TrainingJobName`, `TrainingJobStatus`, `FinalObjectiveValue`,
`FailureReason`, `TrainingStartTime`, `TrainingEndTime`) uses the column's constant too:
one spelling, one name, whichever side of the API it is on.

The objective's value goes by the fewest names its formats need:
  - `Key.OBJECTIVE_VALUE` ("objective_value"): a training job's record and row (the journal's
    `trial_ended`/`trial_paused` records, the table's rows), and the result a running trial
    hands Ray Tune and the schedulers (`hpt.core.trial.OBJECTIVE`, the same word);
  - `Key.VALUE` ("value"): the objective's latest value in a `trial_progress` event, as every
    journal has written it (and a data point's value in metrics.jsonl: any metric's);
  - `Column.FINAL_OBJECTIVE_VALUE` ("FinalObjectiveValue"): the table's column, SageMaker's.

Standard library only, no hpt import: every layer reads it.
"""

from __future__ import annotations


class Column:
    """The experiment table's columns (hpt.experiment.table), after the tuned
    hyperparameters: SageMaker's analytics columns first, then hpt's, then each metric's final
    value (under the metric's name), then the judged columns of a space with constraints or
    several objectives."""

    TRAINING_JOB_NAME = "TrainingJobName"
    TRAINING_JOB_STATUS = "TrainingJobStatus"
    FINAL_OBJECTIVE_VALUE = "FinalObjectiveValue"
    TRAINING_START_TIME = "TrainingStartTime"
    TRAINING_END_TIME = "TrainingEndTime"
    TRAINING_ELAPSED_TIME_SECONDS = "TrainingElapsedTimeSeconds"
    # hpt's own
    TRIAL_NUMBER = "TrialNumber"
    FAILURE_REASON = "FailureReason"
    OBJECTIVE_STEPS = "ObjectiveSteps"
    EXIT_CODE = "ExitCode"
    HOSTS = "Hosts"
    GPU_IDS = "GpuIds"
    LOG_PATH = "LogPath"
    MODEL_ARTIFACT = "ModelArtifact"
    RETRIES = "Retries"
    RESUMED_FROM_STEP = "ResumedFromStep"
    PARENT_TRAINING_JOB = "ParentTrainingJob"
    EXPLOIT_COUNT = "ExploitCount"
    QUEUE_WAIT_SECONDS = "QueueWaitSeconds"
    LAUNCH_SECONDS = "LaunchSeconds"
    TEARDOWN_SECONDS = "TeardownSeconds"
    RESOURCE_WAIT_SECONDS = "ResourceWaitSeconds"
    S3_MODEL_ARTIFACT = "S3ModelArtifact"
    # judged (hpt.core.objectives says what both mean)
    FEASIBLE = "Feasible"
    PARETO_OPTIMAL = "ParetoOptimal"


# Lists, not tuples: a DataFrame is indexed with them (df[OVERHEAD_COLUMNS]).
SAGEMAKER_COLUMNS = [Column.TRAINING_JOB_NAME, Column.TRAINING_JOB_STATUS,
                     Column.FINAL_OBJECTIVE_VALUE, Column.TRAINING_START_TIME,
                     Column.TRAINING_END_TIME, Column.TRAINING_ELAPSED_TIME_SECONDS]
HPT_COLUMNS = [Column.TRIAL_NUMBER, Column.FAILURE_REASON, Column.OBJECTIVE_STEPS,
               Column.EXIT_CODE, Column.HOSTS, Column.GPU_IDS, Column.LOG_PATH,
               Column.MODEL_ARTIFACT, Column.RETRIES, Column.RESUMED_FROM_STEP,
               Column.PARENT_TRAINING_JOB, Column.EXPLOIT_COUNT, Column.QUEUE_WAIT_SECONDS,
               Column.LAUNCH_SECONDS, Column.TEARDOWN_SECONDS, Column.RESOURCE_WAIT_SECONDS,
               Column.S3_MODEL_ARTIFACT]
# What hpt adds around a training job, less ResourceWaitSeconds: the part of its queue wait
# spent waiting for another job to free CPUs or GPUs, the machine's, reported apart.
OVERHEAD_COLUMNS = [Column.QUEUE_WAIT_SECONDS, Column.LAUNCH_SECONDS, Column.TEARDOWN_SECONDS]


class Event:
    """The `event` of each journal line (journal.jsonl), in the order a job writes them."""

    JOB_STARTED = "job_started"
    JOB_RESUMED = "job_resumed"
    CHANNEL_DOWNLOADED = "channel_downloaded"
    RAY_CONNECTED = "ray_connected"
    RAY_LOST = "ray_lost"
    TRIAL_STARTED = "trial_started"
    TRIAL_PROGRESS = "trial_progress"
    TRIAL_RETRIED = "trial_retried"
    TRIAL_EXPLOITED = "trial_exploited"
    TRIAL_EXPLOIT_WITHOUT_CHECKPOINT = "trial_exploit_without_checkpoint"
    TRIAL_PAUSED = "trial_paused"
    TRIAL_ENDED = "trial_ended"
    TRIAL_UPLOADED = "trial_uploaded"
    TRIAL_UPLOAD_FAILED = "trial_upload_failed"
    # MLflow tracking writes `tracking_<kind>` (hpt.tracking.process): its last one is this.
    TRACKING_ENDED = "tracking_ended"
    LAUNCHER_FAILED = "launcher_failed"
    JOB_ENDED = "job_ended"


# The events that begin a run of the launcher: a journal is a sequence of runs.
JOB_STARTS = (Event.JOB_STARTED, Event.JOB_RESUMED)
TRACKING_PREFIX = "tracking_"


class Key:
    """Keys of the journal's lines and of a training job's row (its record, TrainingJobRecord
    .to_json(), and what the table folds from the journal). A one-word key (`event`, `time`,
    `status`, `value`, ...) is English too (an HTTP body's `status`): the schema test
    enforces it where a journal line or a row is read (a variable named as rows and events
    are named here: `row`, `ev`, `record`, ...), and every other key everywhere
    (ENFORCED_KEYS)."""

    # every line
    EVENT = "event"
    TIME = "time"
    # a training job's row
    TRAINING_JOB_NAME = "training_job_name"
    TRIAL_NUMBER = "trial_number"
    HYPERPARAMETERS = "hyperparameters"
    STATUS = "status"
    OBJECTIVE_VALUE = "objective_value"
    FINAL_METRICS = "final_metrics"
    FAILURE_REASON = "failure_reason"
    INFRASTRUCTURE_FAILURE = "infrastructure_failure"
    OBJECTIVE_STEPS = "objective_steps"
    START_TIME = "start_time"
    END_TIME = "end_time"
    EXIT_CODE = "exit_code"
    LOG_PATH = "log_path"
    MODEL_ARTIFACT = "model_artifact"
    S3_MODEL_ARTIFACT = "s3_model_artifact"
    UPLOAD_TIME = "upload_time"  # when its model reached S3 (the trial_uploaded event's time)
    UPLOAD_FAILURE = "upload_failure"
    HOSTS = "hosts"
    GPU_IDS = "gpu_ids"
    QUEUE_WAIT_SECONDS = "queue_wait_seconds"
    LAUNCH_SECONDS = "launch_seconds"
    TEARDOWN_SECONDS = "teardown_seconds"
    RESUMED_FROM_STEP = "resumed_from_step"
    RETRIES = "retries"
    RUNGS = "rungs"
    RUNG_METRICS = "rung_metrics"  # promotion: the final metrics of each rung's run
    PROMOTED_FROM = "promoted_from"
    PARENT = "parent"
    EXPLOIT_COUNT = "exploit_count"
    BUDGET = "budget"
    # the events' own fields
    RECORD = "record"  # trial_ended, trial_paused: the TrainingJobRecord.to_json()
    VALUE = "value"  # trial_progress: the objective's latest value
    STEP = "step"  # trial_progress, trial_exploited: the objective step
    CONTINUED = "continued"  # trial_started: a paused job continues (not a retry)
    RUNG = "rung"  # trial_paused
    PARENT_HYPERPARAMETERS = "parent_hyperparameters"  # trial_exploited
    URIS = "uris"  # trial_uploaded
    REASON = "reason"  # trial_upload_failed, job_ended
    WHY = "why"  # launcher_failed, ray_lost
    RESUME_COMMAND = "resume_command"  # job_started, launcher_failed
    UNREADABLE_JOURNAL_LINES = "unreadable_journal_lines"  # job_resumed
    SPACE_MAX_TRIALS = "space_max_trials"  # job_started
    BEST_TRAINING_JOB = "best_training_job"  # job_ended


class Point:
    """One data point of a training job: a line of its metrics.jsonl (hpt.experiment.checkpoints
    .parse_points reads it) and a row of hpt.load_metrics. English words: enforced where a
    point is read (see Key)."""

    METRIC = "metric"
    STEP = "step"
    VALUE = "value"
    TIMESTAMP = "timestamp"


POINT_KEYS = (Point.METRIC, Point.STEP, Point.VALUE, Point.TIMESTAMP)


class File:
    """Files of an experiment folder `<experiments-dir>/<tuning-job>/` (hpt.experiment.store
    says what each holds) and of each training job's folder in it."""

    SPEC = "spec.json"
    JOURNAL = "journal.jsonl"
    STUDY = "optuna.journal"
    TABLE_PARQUET = "table.parquet"
    TABLE_CSV = "table.csv"
    # `hpt stop` writes it in a tuning job's folder (the launcher watches for it), StopTraining
    # Job in one training job's folder (that job's core watches for it)
    STOP_REQUESTED = "stop-requested"
    LAUNCHER_LOCK = "launcher.lock"
    LAUNCHER_LOG = "launcher.log"  # hpt api: the launcher's output
    API_REQUEST = "request.json"  # hpt api: a tuning job's request (or a training job's)
    MLFLOW_STATE = "mlflow.json"
    MLFLOW_LOCK = "mlflow.lock"
    MLFLOW_FOLLOWER_LOG = "mlflow-follower.log"
    REPORT_HTML = "report.html"
    # in a training job's folder
    METRICS = "metrics.jsonl"  # its data points, one JSON object (Point) per line
    # in a host's /opt/ml tree: where a script may push data points (hpt.runtime.pushed_metrics)
    PUSHED_METRICS = "output/metrics/metrics.jsonl"


def _names(group: type) -> frozenset[str]:
    return frozenset(value for name, value in vars(group).items() if name.isupper())


COLUMNS = _names(Column)
EVENTS = _names(Event)
KEYS = _names(Key)
POINT_NAMES = _names(Point)
FILES = _names(File)
# One-word keys are English as well: enforced where rows are read (see Key).
ENFORCED_KEYS = frozenset(key for key in KEYS if "_" in key)
