"""How much sooner a training job starts on a warm pool: `hpt api` on loopback, moto's S3
server, one JSON line.

    python scripts/bench_warm_pools.py            # 8 jobs of each kind
    python scripts/bench_warm_pools.py --quick    # 3 of each, a smoke check

A no-op script-mode training job (CreateTrainingJob, as the SDK's `fit()` sends it) is run
again and again, one at a time, alternating: a cold job (no KeepAlivePeriodInSeconds: a new
runner process, a new connection to Ray, new actors) and a warm one (KeepAlivePeriodInSeconds
set: it runs on the warm pool the previous warm job left; the very first warm job, which
starts the pool cold, is not counted). For each, from its DescribeTrainingJob: start =
Training's StartTime - CreationTime (the script is running), and from the client's side:
whole = CreateTrainingJob sent -> DescribeTrainingJob says Completed (polled every 50 ms).
The line gives the medians of each kind and warm/cold ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SCRIPT = "print('loss=0.5', flush=True)\n"
BUCKET = "bench-warm-pools"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    jobs = 3 if args.quick else 8
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    s3_url = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_url}
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")})
    with tempfile.TemporaryDirectory(prefix="hpt-bench-warm-") as folder:
        server, url = start_server(Path(folder), env)
        try:
            print(json.dumps(measure(url, s3_url, jobs, args.quick)), flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
            moto.stop()
    return 0


def start_server(folder: Path, env: dict) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "hpt-api.log"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "hpt", "api", "--port", str(port), "--experiments-dir",
             str(folder / "experiments"), "--num-cpus", "4"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while "SageMaker API at" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit(f"hpt api did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    return server, f"http://127.0.0.1:{port}"


def measure(url: str, s3_url: str, jobs: int, quick: bool) -> dict:
    import boto3

    session = boto3.Session(region_name="us-east-1")
    sm = session.client("sagemaker", endpoint_url=url)
    s3 = session.client("s3", endpoint_url=s3_url)
    code = upload_code(s3)
    run(sm, "warm-first", code, keep_alive=300)  # starts the pool, cold: not counted
    times: dict[str, list[dict]] = {"cold": [], "warm": []}
    for i in range(jobs):  # alternating, so that both kinds see the same machine
        times["cold"].append(run(sm, f"cold-{i}", code, keep_alive=0))
        times["warm"].append(run(sm, f"warm-{i}", code, keep_alive=300))
    reused = all(sm.describe_training_job(TrainingJobName=f"warm-{i}")["WarmPoolStatus"]
                 ["Status"] in ("Reused", "Available") for i in range(jobs))
    figures = {kind: {part: round(statistics.median(t[part] for t in runs), 3)
                      for part in ("start_seconds", "whole_seconds")}
               for kind, runs in times.items()}
    return {"bench": "warm_pools", "jobs_each": jobs, "every_warm_job_reused_a_pool": reused,
            "cold": figures["cold"], "warm": figures["warm"],
            "start_ratio": round(figures["warm"]["start_seconds"] /
                                 figures["cold"]["start_seconds"], 3),
            "whole_ratio": round(figures["warm"]["whole_seconds"] /
                                 figures["cold"]["whole_seconds"], 3),
            "quick": quick}


def upload_code(s3) -> str:
    s3.create_bucket(Bucket=BUCKET)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = SCRIPT.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    return f"s3://{BUCKET}/code/sourcedir.tar.gz"


def run(sm, name: str, code: str, keep_alive: int) -> dict:
    resources = {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30}
    if keep_alive:
        resources["KeepAlivePeriodInSeconds"] = keep_alive
    sent = time.time()
    sm.create_training_job(
        TrainingJobName=name, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                "MetricDefinitions": [{"Name": "loss",
                                                       "Regex": "loss=([0-9.]+)"}]},
        HyperParameters={"sagemaker_program": '"train.py"',
                         "sagemaker_submit_directory": json.dumps(code)},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig=resources, StoppingCondition={"MaxRuntimeInSeconds": 300})
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] != "InProgress":
            break
        time.sleep(0.05)
    whole = time.time() - sent
    if job["TrainingJobStatus"] != "Completed":
        raise SystemExit(f"{name}: {job['TrainingJobStatus']}: {job.get('FailureReason')}")
    training = next(t for t in job["SecondaryStatusTransitions"] if t["Status"] == "Training")
    return {"start_seconds": (training["StartTime"] - job["CreationTime"]).total_seconds(),
            "whole_seconds": whole}


if __name__ == "__main__":
    sys.exit(main())
