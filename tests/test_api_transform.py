"""Batch transform through `hpt api` with boto3, as a SageMaker notebook runs it: a model in
SageMaker's PyTorch inference convention (code/inference.py in model.tar.gz, served by the
framework's serving program, a real process), input objects under an S3 prefix on moto's
server, the output read back. Split by line, mini-batches, an ID column filtered out and
joined back, several objects at once; a record the model refuses fails the job naming the
object and the record; a stop; CloudWatch Logs of the job; what cannot run is refused at
create. And kill -9 of the server mid-job: the next server goes on, skipping the objects
done, and no output is written twice."""

import gzip
import io
import signal
import tarfile
import time

import pytest

from api_helpers import BUCKET, PYTORCH_INFERENCE, ROLE, ApiServer, boto_clients, wait_status
from helpers import processes_in, wait_for

pytestmark = pytest.mark.smoke

# A model in the PyTorch inference toolkit's convention: CSV rows in, each row's sum times the
# model's scale out, one line per row; a row that says "bad" is refused; SLEEP_SECONDS (the
# job's Environment) slows each request down.
INFERENCE = '''
import os
import time


def model_fn(model_dir):
    with open(os.path.join(model_dir, "scale.txt")) as f:
        return {"scale": float(f.read())}


def input_fn(body, content_type):
    time.sleep(float(os.environ.get("SLEEP_SECONDS", "0")))
    rows = [line.split(",") for line in body.strip().splitlines()]
    for row in rows:
        if "bad" in row:
            raise ValueError(f"cannot read row {row}")
    return rows


def predict_fn(rows, model):
    return [sum(float(v) for v in row) * model["scale"] for row in rows]


def output_fn(prediction, accept):
    return "\\n".join(f"{p:g}" for p in prediction), "text/csv"
'''

INPUTS = {"batch-in/a.csv": "id1,1,2\nid2,3,4\nid3,5,6\n",
          "batch-in/more/b.csv": "id4,10,20\nid5,0.5,0.5\n"}


def model_archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in (("scale.txt", "2"), ("code/inference.py", INFERENCE)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def create_model(sm, s3, name: str = "summer") -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="models/summer/model.tar.gz", Body=model_archive())
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": PYTORCH_INFERENCE, "ModelDataUrl": f"s3://{BUCKET}/models/summer/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})


def transform_request(name: str, prefix: str = "batch-in/", **fields) -> dict:
    return {"TransformJobName": name, "ModelName": "summer",
            "TransformInput": {"DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}"}},
                "ContentType": "text/csv", "SplitType": "Line"},
            "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/out/{name}",
                                "Accept": "text/csv", "AssembleWith": "Line"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            **fields}


def outputs(s3, name: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"out/{name}/").get("Contents", [])
    return {o["Key"][len(f"out/{name}/"):]: s3.get_object(Bucket=BUCKET, Key=o["Key"])[
        "Body"].read().decode() for o in listed}


def finished(sm, name: str, timeout: float = 120) -> dict:
    return wait_status(lambda: sm.describe_transform_job(TransformJobName=name),
                       "TransformJobStatus", ("Completed", "Failed", "Stopped"), timeout)


def test_boto3_transforms_splits_filters_joins_fails_and_stops(moto_server, tmp_path):
    import boto3

    server = ApiServer(tmp_path / "experiments", moto_server).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        create_model(sm, s3)
        for key, text in INPUTS.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())

        # The ID column dropped on the way in and joined back; the ID and the answer kept.
        sm.create_transform_job(**transform_request(
            "joined", BatchStrategy="MultiRecord", MaxConcurrentTransforms=2,
            DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input",
                            "OutputFilter": "$[0,-1]"}))
        described = finished(sm, "joined")
        assert described["TransformJobStatus"] == "Completed", described
        assert described["TransformStartTime"] <= described["TransformEndTime"]
        assert described["BatchStrategy"] == "MultiRecord"
        assert outputs(s3, "joined") == {"a.csv.out": "id1,6\nid2,14\nid3,22\n",
                                         "more/b.csv.out": "id4,60\nid5,2\n"}

        # One record a request, no filters, a gzipped object: the answers as they are.
        s3.put_object(Bucket=BUCKET, Key="numbers/x.csv.gz", Body=gzip.compress(b"1,2\n3,4\n"))
        sm.create_transform_job(**transform_request(
            "plain", "numbers/", TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": f"s3://{BUCKET}/numbers/"}},
                "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "Gzip"}))
        assert finished(sm, "plain")["TransformJobStatus"] == "Completed"
        assert outputs(s3, "plain") == {"x.csv.gz.out": "6\n14\n"}

        listed = sm.list_transform_jobs(SortBy="Name")["TransformJobSummaries"]
        assert [j["TransformJobName"] for j in listed] == ["joined", "plain"]

        # A refused record fails the job, naming the object and the record.
        s3.put_object(Bucket=BUCKET, Key="bad-in/x.csv", Body=b"1,2\n3,bad\n")
        sm.create_transform_job(**transform_request("refused", "bad-in/"))
        failed = finished(sm, "refused")
        assert failed["TransformJobStatus"] == "Failed"
        assert (f"s3://{BUCKET}/bad-in/x.csv: record 2: the model answered 500: cannot read "
                f"row ['3', 'bad']") in failed["FailureReason"], failed
        assert sm.list_transform_jobs(StatusEquals="Failed")["TransformJobSummaries"][0][
            "TransformJobName"] == "refused"

        # A stop, seen between requests: Stopping, then Stopped; outputs so far stay whole.
        for k in range(6):
            s3.put_object(Bucket=BUCKET, Key=f"slow-in/{k}.csv", Body=b"1\n2\n3\n")
        sm.create_transform_job(**transform_request("stopped", "slow-in/",
                                                    Environment={"SLEEP_SECONDS": "0.5"}))
        wait_for(lambda: outputs(s3, "stopped"), timeout=120, what="a first output")
        sm.stop_transform_job(TransformJobName="stopped")
        assert sm.describe_transform_job(TransformJobName="stopped")["TransformJobStatus"] in (
            "Stopping", "Stopped")
        assert finished(sm, "stopped")["TransformJobStatus"] == "Stopped"
        done = outputs(s3, "stopped")
        assert 1 <= len(done) < 6 and set(done.values()) == {"2\n4\n6\n"}
        with pytest.raises(sm.exceptions.ClientError, match="is in status Stopped"):
            sm.stop_transform_job(TransformJobName="stopped")

        # The job's log as CloudWatch Logs serves it (what the SDK's logs=True tails).
        logs = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             region_name="us-east-1").client("logs", endpoint_url=server.url)
        streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs",
                                            logStreamNamePrefix="joined/")["logStreams"]
        names = [s["logStreamName"] for s in streams]
        assert names[0].startswith("joined/algo-1-") and any("data-log" in n for n in names)
        data_log = next(n for n in names if "data-log" in n)
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TransformJobs",
                                     logStreamName=data_log, startFromHead=True)["events"]
        assert any("a.csv: 3 records" in e["message"] for e in events), events
        _hpt_ls_shows_them(tmp_path / "experiments")
    finally:
        server.stop(signal.SIGTERM)
    assert processes_in(tmp_path / "experiments") == []


def test_what_cannot_run_is_refused_at_create(moto_server, tmp_path):
    server = ApiServer(tmp_path / "experiments", moto_server).start()
    try:
        sm, _, s3 = boto_clients(server.url, moto_server)
        create_model(sm, s3)
        for fields, says in (
                ({"ModelName": "nobody"}, 'Could not find model "nobody"'),
                ({"DataProcessing": {"InputFilter": "features"}},
                 "DataProcessing.InputFilter: 'features' must start with $"),
                ({"TransformInput": {"DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/x"}},
                    "SplitType": "RecordIO"}}, "TransformInput.SplitType: RecordIO")):
            with pytest.raises(sm.exceptions.ClientError, match=says.replace("$", r"\$")):
                sm.create_transform_job(**{**transform_request("no"), **fields})
        assert sm.list_transform_jobs()["TransformJobSummaries"] == []
        # No object under the prefix: Failed at run time, as SageMaker says it.
        sm.create_transform_job(**transform_request("empty", "nothing-here/"))
        failed = finished(sm, "empty")
        assert "No S3 objects found under S3 URL" in failed["FailureReason"]
        with pytest.raises(sm.exceptions.ClientError, match="already exists"):
            sm.create_transform_job(**transform_request("empty"))
    finally:
        server.stop(signal.SIGTERM)


def test_kill_9_of_the_server_mid_transform_goes_on_without_writing_twice(moto_server,
                                                                          tmp_path):
    experiments = tmp_path / "experiments"
    server = ApiServer(experiments, moto_server).start()
    sm, _, s3 = boto_clients(server.url, moto_server)
    create_model(sm, s3)
    for k in range(6):
        s3.put_object(Bucket=BUCKET, Key=f"slow-in/{k}.csv", Body=f"{k}\n{k}\n".encode())
    sm.create_transform_job(**transform_request("resumed", "slow-in/",
                                                Environment={"SLEEP_SECONDS": "0.4"}))
    wait_for(lambda: len(outputs(s3, "resumed")) >= 2, timeout=120, what="two outputs")
    before = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(
        Bucket=BUCKET, Prefix="out/resumed/")["Contents"]}
    server.stop(signal.SIGKILL)
    wait_for(lambda: processes_in(experiments) == [], timeout=30,
             what="every process of the killed server to end")
    time.sleep(1.1)  # a rewrite would carry a later LastModified

    again = ApiServer(experiments, moto_server).start()
    try:
        sm, _, s3 = boto_clients(again.url, moto_server)
        assert finished(sm, "resumed")["TransformJobStatus"] == "Completed"
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="out/resumed/")["Contents"]
        assert sorted(o["Key"] for o in listed) == [f"out/resumed/{k}.csv.out"
                                                    for k in range(6)]
        for key, when in before.items():  # done before the kill: not written again
            assert next(o for o in listed if o["Key"] == key)["LastModified"] == when
        assert outputs(s3, "resumed") == {f"{k}.csv.out": f"{2 * k}\n{2 * k}\n"
                                          for k in range(6)}
        assert "goes on, skipping the objects done" in again.output()
    finally:
        again.stop(signal.SIGTERM)
    assert processes_in(experiments) == []


def _hpt_ls_shows_them(experiments) -> None:
    """`hpt ls` lists what hpt api ran on its own, below the tuning jobs (none here)."""
    import re
    import subprocess
    import sys

    import os

    done = subprocess.run([sys.executable, "-m", "hpt.cli.main", "ls", "--experiments-dir",
                           str(experiments)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "250"})  # a wide terminal's
    assert done.returncode == 0, done.stderr
    assert "Training and transform jobs hpt api ran on their own:" in done.stdout
    assert re.search(r"^TransformJob\s+joined\s+Completed", done.stdout, re.M), done.stdout
    assert re.search(r"^TransformJob\s+refused\s+Failed\s.*record 2: the model answered 500",
                     done.stdout, re.M), done.stdout
