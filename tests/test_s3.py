"""S3 channels and artifacts against a real S3 API: moto's server on 127.0.0.1 (HTTP, boto3's
standard configuration via AWS_ENDPOINT_URL), no in-process mocks."""

import json
import tarfile

import boto3
import pandas as pd
import pytest

import hpt
from hpt.core.errors import UserError
from hpt.launcher.launch import launch
from hpt.runtime.artifacts import artifact_uris
from hpt.runtime.channels import download_channel, local_key_path
from hpt.spacefile import load_spec
from helpers import faulty_space


@pytest.fixture
def s3(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3")
    for bucket in ("data", "out"):
        client.create_bucket(Bucket=bucket)
    return client


def test_a_channel_is_downloaded_once_and_then_served_from_its_cache(s3, tmp_path):
    for i in range(5):
        s3.put_object(Bucket="data", Key=f"digits/train/part-{i}.csv", Body=f"{i}\n".encode())
    s3.put_object(Bucket="data", Key="digits/train/sub/extra.csv", Body=b"x\n")
    first = download_channel(s3, "s3://data/digits/train", tmp_path / "train")
    assert (first["objects"], first["downloaded"], first["cached"]) == (6, 6, 0)
    assert (tmp_path / "train" / "part-3.csv").read_text() == "3\n"
    assert (tmp_path / "train" / "sub" / "extra.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [  # exactly the data
        "part-0.csv", "part-1.csv", "part-2.csv", "part-3.csv", "part-4.csv", "sub"]
    again = download_channel(s3, "s3://data/digits/train", tmp_path / "train")
    assert (again["downloaded"], again["cached"]) == (0, 6)  # the cache hit
    s3.put_object(Bucket="data", Key="digits/train/part-0.csv", Body=b"changed\n")
    changed = download_channel(s3, "s3://data/digits/train", tmp_path / "train")
    assert changed["downloaded"] == 1 and (tmp_path / "train" / "part-0.csv").read_text() == \
        "changed\n"


@pytest.mark.parametrize("key", ["p/../../etc/passwd", "p/./x", "p//..", "p/"])
def test_keys_that_would_leave_the_channel_folder_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="would not land inside"):
        local_key_path(tmp_path, key, "p/")


def test_a_symlink_planted_in_the_channel_folder_carries_no_download_outside(s3, tmp_path):
    s3.put_object(Bucket="data", Key="planted/ok.csv", Body=b"ok\n")
    s3.put_object(Bucket="data", Key="planted/sub/evil.csv", Body=b"evil\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "train"
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)  # planted before the download
    with pytest.raises(ValueError, match="leads outside"):
        download_channel(s3, "s3://data/planted", dest)
    assert list(outside.iterdir()) == []
    # A planted link to a file is replaced by the download, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (dest / "sub").unlink()
    (dest / "ok.csv").unlink()
    (dest / "ok.csv").symlink_to(victim)
    download_channel(s3, "s3://data/planted", dest)
    assert victim.read_text() == "untouched\n"
    assert not (dest / "ok.csv").is_symlink() and (dest / "ok.csv").read_text() == "ok\n"


def test_a_running_jobs_checkpoints_are_synced_changed_files_only(s3, tmp_path):
    from hpt.runtime.artifacts import FolderSync

    tree = tmp_path / "algo-1"
    (tree / "checkpoints" / "sub").mkdir(parents=True)
    (tree / "checkpoints" / "epoch-1.pt").write_bytes(b"1")
    (tree / "checkpoints" / "sub" / "state.json").write_text("{}")
    sync = FolderSync(s3, tree, "s3://out/sync", "job-001-abcd1234")
    assert sync.run() == 2
    assert sync.run() == 0  # nothing changed: nothing sent
    (tree / "checkpoints" / "epoch-2.pt").write_bytes(b"2")
    assert sync.run() == 1
    keys = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket="out", Prefix="sync/job-001-abcd1234/")["Contents"])
    assert keys == ["sync/job-001-abcd1234/checkpoints/epoch-1.pt",
                    "sync/job-001-abcd1234/checkpoints/epoch-2.pt",
                    "sync/job-001-abcd1234/checkpoints/sub/state.json"]


def test_the_data_points_synced_follow_the_checkpoints_even_when_no_checkpoint_changed(
        s3, tmp_path):
    """A script writes checkpoint N, then prints epoch N's line: a sync in between sends
    checkpoint N with points up to N-1. The next sync sends the points though no checkpoint
    changed (else a retry elsewhere counts its steps on from N-1), and never points newer
    than the checkpoints it sent."""
    import json

    from hpt.runtime.artifacts import HPT_METRICS_KEY, FolderSync

    job = tmp_path / "job-001-abcd1234"
    tree = job / "algo-1"
    (tree / "checkpoints").mkdir(parents=True)
    metrics = job / "metrics.jsonl"

    def point(step):
        with metrics.open("a") as f:
            f.write(json.dumps({"metric": "acc", "value": step / 10, "step": step,
                                "timestamp": 1.0 + step}) + "\n")

    def synced_steps():
        body = s3.get_object(Bucket="out", Key=f"sync/job-001-abcd1234/{HPT_METRICS_KEY}")
        return [json.loads(line)["step"] for line in body["Body"].read().decode().splitlines()]

    sync = FolderSync(s3, tree, "s3://out/sync", "job-001-abcd1234")
    point(1)
    (tree / "checkpoints" / "checkpoint-1.pt").write_bytes(b"1")
    (tree / "checkpoints" / "checkpoint-2.pt").write_bytes(b"2")  # epoch 2's line not yet out
    assert sync.run() == 2 and synced_steps() == [1]
    point(2)
    assert sync.run() == 0 and synced_steps() == [1, 2]  # the points, no checkpoint
    assert sync.run() == 0 and synced_steps() == [1, 2]

    class EpochsEndDuringTheUpload:
        """s3, where epochs 3 and 4 end (checkpoint, line) while checkpoint-3 goes up."""

        def __getattr__(self, name):
            return getattr(s3, name)

        def upload_file(self, filename, bucket, key, *args, **kwargs):
            if key.endswith("checkpoint-3.pt"):
                point(3)
                (tree / "checkpoints" / "checkpoint-4.pt").write_bytes(b"4")
                point(4)
            return s3.upload_file(filename, bucket, key, *args, **kwargs)

    (tree / "checkpoints" / "checkpoint-3.pt").write_bytes(b"3")
    sync.client = EpochsEndDuringTheUpload()
    assert sync.run() == 1
    sync.client = s3
    assert synced_steps() == [1, 2]  # read before checkpoint-3 went up: none newer than it
    sync.run()
    assert synced_steps() == [1, 2, 3, 4]


def test_artifacts_go_where_sagemaker_puts_them():
    assert artifact_uris("s3://out/tuning", "job-001-abcd1234") == {
        "model": "s3://out/tuning/job-001-abcd1234/output/model.tar.gz",
        "output": "s3://out/tuning/job-001-abcd1234/output/output.tar.gz"}
    assert artifact_uris("s3://out", "j")["model"] == "s3://out/j/output/model.tar.gz"


def test_a_tuning_job_trains_on_s3_data_and_uploads_its_models(ray_session, s3, write_space,
                                                                 tmp_path):
    s3.put_object(Bucket="data", Key="faults/train/data.txt", Body=b"hello\n")
    space = faulty_space(name="s3job", output="s3://out/tuning",
                         channels={"train": "s3://data/faults/train"},
                         hyperparameters={"mode": {"type": "categorical",
                                                   "values": ["ok", "fail"]}})
    result = launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment(result.experiment_dir)
    ok = df[df["mode"] == "ok"].iloc[0]
    assert ok["TrainingJobStatus"] == "Completed"
    assert ok["S3ModelArtifact"] == f"s3://out/tuning/{ok['TrainingJobName']}/output/model.tar.gz"
    fetched = tmp_path / "model.tar.gz"
    s3.download_file("out", f"tuning/{ok['TrainingJobName']}/output/model.tar.gz", str(fetched))
    with tarfile.open(fetched) as tar:
        seen = json.load(tar.extractfile("seen.json"))
    # The trial read the channel at its contract path: a local copy of the S3 prefix.
    assert seen["env"]["SM_CHANNEL_TRAIN"].endswith("/algo-1/input/data/train")
    # output/intermediate was synced where SageMaker puts it.
    progress = s3.get_object(Bucket="out", Key=f"tuning/{ok['TrainingJobName']}/output/"
                                               f"intermediate/progress.txt")["Body"].read()
    assert progress == b"3 epochs\n"
    channel = result.experiment_dir / "channels" / "train" / "data.txt"
    assert channel.read_text() == "hello\n"
    failed = df[df["mode"] == "fail"].iloc[0]
    assert failed["TrainingJobStatus"] == "Failed" and pd.isna(failed["S3ModelArtifact"])
    events = [json.loads(line) for line in (result.experiment_dir / "journal.jsonl").open()]
    downloads = [e for e in events if e["event"] == "channel_downloaded"]
    assert len(downloads) == 1 and downloads[0]["downloaded"] == 1  # once per tuning job
    assert json.loads((result.experiment_dir / "spec.json").read_text())[
        "channels"]["train"]["uri"] == "s3://data/faults/train"  # the user's spec, as given


def test_a_missing_bucket_is_bad_input_and_leaves_nothing(s3, write_space, tmp_path):
    space = faulty_space(name="nobucket", channels={"train": "s3://no-such-bucket/x"})
    with pytest.raises(UserError, match="channels.train: cannot download s3://no-such-bucket/x"):
        launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    assert not (tmp_path / "exp" / "nobucket").exists()


def test_a_sharded_s3_channel_gives_each_host_every_nth_key(s3, write_space, tmp_path):
    from hpt.runtime.channels import stage_s3_channels
    from hpt.runtime.tree import shard_files

    for i in range(5):
        s3.put_object(Bucket="data", Key=f"shards/part-{i}", Body=b"x")
    space = faulty_space(name="sharded", channels={
        "train": {"uri": "s3://data/shards", "distribution": "ShardedByS3Key"}})
    spec = load_spec(write_space(space))
    downloads, trial_spec = stage_s3_channels(spec, tmp_path / "job", s3)
    channel = trial_spec.channels["train"]
    assert channel.distribution == "ShardedByS3Key" and not channel.is_s3
    hosts = [[p.name for p in shard_files(channel.uri, i, 2)] for i in range(2)]
    assert hosts == [["part-0", "part-2", "part-4"], ["part-1", "part-3"]]  # by key order


def test_a_failed_upload_is_journaled_and_the_job_goes_on(ray_session, s3, write_space, tmp_path):
    space = faulty_space(name="noout", output="s3://no-such-output-bucket/x",
                         hyperparameters={"mode": {"type": "categorical", "values": ["ok"]}})
    result = launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    assert result.exit_code == 0
    df = hpt.load_experiment(result.experiment_dir)
    assert df["TrainingJobStatus"].tolist() == ["Completed"]
    events = [json.loads(line) for line in (result.experiment_dir / "journal.jsonl").open()]
    failed = [e for e in events if e["event"] == "trial_upload_failed"]
    assert failed and "NoSuchBucket" in failed[-1]["reason"]


def test_a_retry_on_a_node_without_the_earlier_attempt_gets_its_checkpoints_from_s3(
        ray_session, s3, write_space, digits_channels, tmp_path, monkeypatch):
    """output: s3://: the checkpoints synced to <output>/<job>/checkpoints/ (SageMaker's
    CheckpointConfig place) come back for a retry that finds no earlier attempt here (as on
    another node of a cluster), and its steps continue from the points synced with them."""
    import hpt.experiment.store as store
    from hpt.runtime.artifacts import ArtifactUploader
    from hpt.runtime.local_job import LocalTrainingJob
    from helpers import cnn_space

    monkeypatch.setenv("HPT_CONTROLLER", "local")
    monkeypatch.setattr(ArtifactUploader, "SYNC_SECONDS", 0.2)
    monkeypatch.setattr(store, "latest_with_checkpoint", lambda attempts: None)  # not here
    space = cnn_space("s3ckpt", digits_channels, epochs=12, output="s3://out/ckpt")
    space["static_hyperparameters"]["batch_size"] = 16
    advance = LocalTrainingJob.advance

    def lost_after_four_epochs(self, *args, **kwargs):
        if not (self.trial_dir / "attempt-1").exists() and \
                len(self.parser.series["validation:accuracy"].points) >= 4:
            raise OSError(24, "Too many open files")
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(LocalTrainingJob, "advance", lost_after_four_epochs)
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    (row,) = [r for _, r in hpt.load_experiment("s3ckpt", tmp_path / "exp").iterrows()]
    assert row["TrainingJobStatus"] == "Completed" and row["Retries"] == 1
    assert row["ResumedFromStep"] >= 1 and row["ObjectiveSteps"] >= 11
    log = (tmp_path / "exp" / "s3ckpt" / row["TrainingJobName"] / "algo-1.log").read_text()
    assert "resumed from checkpoint-" in log
    keys = [o["Key"] for o in s3.list_objects_v2(
        Bucket="out", Prefix=f"ckpt/{row['TrainingJobName']}/")["Contents"]]
    assert any("/checkpoints/checkpoint-" in k for k in keys)
