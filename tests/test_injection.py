"""No injection: hyperparameter values with shell metacharacters reach the script byte for
byte, as argv and as SM_HP_* / SM_HPS, through a real tuning job -- no shell anywhere."""

import json
import os
import tarfile

import hpt
from hpt.launcher.launch import launch
from hpt.spacefile import load_spec

HOSTILE = ["; rm -rf ~", "$(touch /tmp/hpt-pwned)", "`id`", "it's \"quoted\"", "two\nlines",
           "--mode=fail", "-x", "a b  c", "ünï ☃", "$HOME ${PATH}", "|| true &&",
           "> /tmp/hpt-pwned"]

# Records exactly what it was given, before any argument parser can interpret it (a value
# that looks like an option is the script's parser's business, on SageMaker as here).
RECORDER = """import json, os, sys
with open(os.path.join(os.environ["SM_MODEL_DIR"], "seen.json"), "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, f)
print("val_acc=1.0", flush=True)
"""


def test_hostile_values_reach_the_script_exactly(ray_session, write_space, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "record.py").write_text(RECORDER)
    space = {"name": "inject", "trainer": {"source_dir": "code", "entry_point": "record.py"},
             "static_hyperparameters": {"note": "$(touch /tmp/hpt-pwned); `id`"},
             "hyperparameters": {"tag": {"type": "categorical", "values": HOSTILE}},
             "objective": {"metric": "acc", "type": "maximize"},
             "metric_definitions": [{"name": "acc", "regex": "val_acc=([0-9.]+)"}],
             "strategy": "grid", "limits": {"max_parallel": 2}}
    launch(load_spec(write_space(space)), tmp_path / "exp", dashboard=False)
    df = hpt.load_experiment("inject", tmp_path / "exp")
    assert sorted(df["tag"]) == sorted(HOSTILE)
    for _, row in df.iterrows():
        assert row["TrainingJobStatus"] == "Completed", row["FailureReason"]
        with tarfile.open(row["ModelArtifact"]) as tar:
            seen = json.load(tar.extractfile("seen.json"))
        # SageMaker's argv: --name value pairs in name order, each value one element.
        assert seen["argv"] == ["--note", "$(touch /tmp/hpt-pwned); `id`", "--tag", row["tag"]]
        assert seen["env"]["SM_HP_TAG"] == row["tag"]  # strings go in as they are
        assert json.loads(seen["env"]["SM_HPS"]) == {"note": "$(touch /tmp/hpt-pwned); `id`",
                                                     "tag": row["tag"]}
    assert not os.path.exists("/tmp/hpt-pwned")  # nothing was ever run by a shell
