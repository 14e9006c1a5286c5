"""The `hpt` command line's arguments: one declarative table (hpt/cli/main.py runs the commands)."""

from __future__ import annotations

import argparse

from hpt.core.schema import File
from hpt.runtime.runtimes import RUNTIMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpt", description=(
        "SageMaker-style hyperparameter tuning jobs on your own machines or Ray cluster."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def experiments_flag(p):
        p.add_argument("--experiments-dir", metavar="DIR",
                       help="where tuning jobs live (default ./experiments, env "
                            "HPT_EXPERIMENTS_DIR)")

    p = sub.add_parser("launch", help="run a tuning job from a space.yaml")
    p.add_argument("space", metavar="SPACE.yaml")
    p.add_argument("--runtime", choices=list(RUNTIMES))
    p.add_argument("--container-engine", choices=["docker", "podman"], default="docker",
                   help="what runs the containers of runtime: docker (default docker)")
    p.add_argument("--role", metavar="ARN", help="runtime: sagemaker: the IAM role of the "
                   "training jobs (default $HPT_SAGEMAKER_ROLE)")
    p.add_argument("--max-trials", type=int, metavar="N")
    p.add_argument("--max-parallel", type=int, metavar="N")
    p.add_argument("--name", help="tuning job name (overrides the space's name)")
    p.add_argument("--resume", action="store_true", help="continue an existing tuning job")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="join a running Ray cluster")
    p.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard")
    p.add_argument("--controller", choices=("local", "tune"),
                   help="what runs the trials: local (hpt itself, on this machine: the "
                        "default without --address; with it, the Ray joined serves only the "
                        "dashboard) or tune (Ray Tune: the default with --address or trials "
                        "of several hosts; each trial a Ray actor)")
    p.add_argument("--dashboard-host", default="127.0.0.1", metavar="IP",
                   help="where a Ray started by hpt serves its dashboard (default 127.0.0.1; "
                        "0.0.0.0 exposes it: keep Ray's token auth on)")
    p.add_argument("--mlflow-uri", metavar="URI", help="also record the job in this MLflow "
                   "tracking server (overrides space.yaml's tracking.mlflow.uri)")
    experiments_flag(p)

    p = sub.add_parser("validate", help="check a space.yaml; launches nothing")
    p.add_argument("space", metavar="SPACE.yaml")

    p = sub.add_parser("status", help="counts by status, best so far, running trials")
    p.add_argument("name")
    experiments_flag(p)

    p = sub.add_parser("report", help="the experiment table, or a report with plots")
    p.add_argument("name")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown", "html", "png",
                                        "tensorboard"],
                   default="table", help="html: one self-contained page (default "
                   f"EXPERIMENT/{File.REPORT_HTML}); png: the main plots (default "
                   "EXPERIMENT/report/); tensorboard: event files, a run per training job (default "
                   "EXPERIMENT/tensorboard/)")
    p.add_argument("--output", metavar="PATH", help="file (or folder, for png) to write")
    p.add_argument("--all-columns", action="store_true", help="table: every column of the "
                   "experiment table (default: the ones to compare jobs by, best first, fit "
                   "to the terminal)")
    experiments_flag(p)

    p = sub.add_parser("export-sagemaker",
                       help="the space as a CreateHyperParameterTuningJob request (JSON)")
    p.add_argument("space", metavar="SPACE.yaml")
    p.add_argument("--primary", metavar="METRIC", help="a multi-objective or constrained "
                   "space: export the single-objective job of this objective (the other "
                   "objectives and the constraints are dropped, and said so)")
    p.add_argument("--flatten", action="store_true", help="a conditional space: export its "
                   "ranges without their when: conditions (every job receives them)")

    p = sub.add_parser("import-sagemaker",
                       help="a CreateHyperParameterTuningJob request as a space.yaml")
    p.add_argument("request", metavar="REQUEST.json")

    p = sub.add_parser("rerun", help="run one training job of a tuning job again, alone")
    p.add_argument("name")
    p.add_argument("training_job", metavar="TRAINING_JOB", help="its name or trial number")
    p.add_argument("--gpus", metavar="IDS", help="GPU ids to give it, e.g. 0,1 (default none)")
    experiments_flag(p)

    p = sub.add_parser("stop", help="stop a running tuning job (trials Stopped, resumable), "
                       "or one of its training jobs")
    p.add_argument("name")
    p.add_argument("--training-job", metavar="JOB", help="stop only this training job (its "
                   "name or trial number): it ends Stopped, the tuning job goes on")
    p.add_argument("--wait", type=float, default=120, metavar="SECONDS",
                   help="how long to wait for the launcher to confirm (default 120)")
    experiments_flag(p)

    p = sub.add_parser("track", help="send what an MLflow server lacks of a tuning job "
                       "(after the server was down, or to record a finished job)")
    p.add_argument("name")
    p.add_argument("--mlflow-uri", metavar="URI", help="the tracking server (default: the "
                   "job's tracking.mlflow.uri, else $MLFLOW_TRACKING_URI, else the one it "
                   "was tracked in)")
    p.add_argument("--wait", type=float, default=60, metavar="SECONDS",
                   help="how long to keep trying while the server does not answer (default 60)")
    experiments_flag(p)

    p = sub.add_parser("ls", help="all tuning jobs: status, training jobs, best objective")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    experiments_flag(p)

    p = sub.add_parser("best", help="the best trial's hyperparameters and model path, as JSON "
                       "(a multi-objective job: its Pareto front)")
    p.add_argument("name")
    pick_flags(p)
    experiments_flag(p)

    p = sub.add_parser("serve", help="serve a trial's model like a SageMaker endpoint "
                       "(variants, shadow, canary)")
    p.add_argument("name")
    p.add_argument("--trial", metavar="T", help="serve this training job (name or trial "
                   "number) instead of the best")
    pick_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free)")
    p.add_argument("--variant", action="append", metavar="SPEC=W", help="a production "
                   "variant and its weight; SPEC is best, a training job name or a trial "
                   "number (repeat for several)")
    p.add_argument("--shadow", metavar="SPEC", action="append", help="also send a copy of "
                   "every request to this training job's model; its answers are logged, never "
                   "returned")
    p.add_argument("--canary", metavar="SPEC", help="roll this training job's model out in "
                   "steps, rolled back when a guardrail trips")
    p.add_argument("--canary-steps", metavar="P,P,...",
                   help="traffic percent of the canary at each step (default 10,50,100)")
    p.add_argument("--bake-seconds", type=float, metavar="S",
                   help="how long each canary step is watched (default 60)")
    p.add_argument("--max-error-rate", type=float, metavar="X",
                   help="canary guardrail: share of 5xx answers (e.g. 0.05)")
    p.add_argument("--max-p99-ms", type=float, metavar="Y",
                   help="canary guardrail: p99 latency in ms (e.g. 500)")
    p.add_argument("--min-requests", type=int, metavar="N",
                   help="canary requests a step needs before it is judged (default 20)")
    p.add_argument("--entry-point", metavar="PATH", help="serving program to run (default "
                   "serve.py in the trainer's source_dir)")
    p.add_argument("--runtime", choices=["local", "docker"], help="where the models serve: "
                   "local processes, or containers (`docker run IMAGE serve`); default: where "
                   "the tuning job trained")
    p.add_argument("--image", metavar="IMAGE", help="the serving image (default the tuning "
                   "job's trainer.image)")
    p.add_argument("--container-engine", choices=["docker", "podman"], default="docker",
                   help="what runs the containers (default docker)")
    p.add_argument("--start-timeout", type=float, default=120.0, metavar="S",
                   help="how long a serving program may take to answer /ping (default 120)")
    experiments_flag(p)

    p = sub.add_parser("api", help="serve the SageMaker API (boto3 and the SageMaker SDK "
                       "run tuning jobs, models and endpoints here)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1; any other needs --access-key-id)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="run the jobs on this Ray "
                   "cluster (default: a Ray of the server's own on 127.0.0.1)")
    p.add_argument("--num-cpus", type=float, metavar="N", help="CPUs of the server's own Ray "
                   "(default this machine's); instance types are capped to it")
    p.add_argument("--num-gpus", type=float, metavar="N", help="GPUs of the server's own Ray "
                   "(default what nvidia-smi lists)")
    p.add_argument("--image-map", action="append", metavar="REPOSITORY=IMAGE",
                   help="run a SageMaker image (by repository, e.g. pytorch-training) as this "
                        "local image, in containers (repeat for several)")
    p.add_argument("--access-key-id", metavar="ID", help="require requests signed (SigV4) "
                   "with this key; its secret is read from HPT_API_SECRET_ACCESS_KEY")
    p.add_argument("--container-engine", choices=["docker", "podman"], default="docker",
                   help="what runs container images (default docker)")
    experiments_flag(p)

    p = sub.add_parser("serve-weights", help="change the traffic weights of a running "
                       "hpt serve")
    p.add_argument("weights", nargs="+", metavar="NAME=W")
    p.add_argument("--url", default="http://127.0.0.1:8080",
                   help="the endpoint (default http://127.0.0.1:8080)")
    return parser


def pick_flags(p) -> None:
    """How one job is chosen from a multi-objective job's Pareto front (hpt.report.front)."""
    p.add_argument("--pick", metavar="RULES", help="choose one job from the Pareto front: "
                   "filters METRIC<=X,METRIC>=Y; the best on the first objective they do not "
                   "name wins (e.g. 'model:size_mb<=0.05')")
    p.add_argument("--weights", metavar="OBJ=W,...", help="choose the front's job with the "
                   "best weighted sum of its objectives, each scaled 0..1 over the front "
                   "(with --pick: over the jobs the filters keep)")
