"""The SageMaker contract (hpt.runtime.contract / tree) against the REAL sagemaker-training toolkit.

Each conformance case renders a host contract, materializes its tree, and starts the entry
point as a real process with exactly the contract's environment; the entry point builds
`sagemaker_training.environment.Environment()` and reports what the toolkit computes. All
cases run in parallel, once per module.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sagemaker_training import mapping, params

from hpt.runtime import contract as contract_module
from hpt.runtime.contract import (
    RESERVED_KEYS,
    HostContract,
    TrialContractInput,
    render_host_contract,
)
from hpt.runtime.encoding import encode_hyperparameters, env_value, user_args
from hpt.core.sagemaker_names import is_reserved
from hpt.runtime.tree import materialize

PROBE = """\
import json, os, sys
from sagemaker_training import environment

env = environment.Environment()
print("HPT-PROBE " + json.dumps({
    "env": env.to_env_vars(),
    "args": env.to_cmd_args(),
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "file_hps": environment.read_hyperparameters(),
    "set_by_toolkit": {k: os.environ.get(k)
                       for k in ("SAGEMAKER_JOB_NAME", "CURRENT_HOST", "SAGEMAKER_REGION")},
    "machine": {"num_cpus": environment.num_cpus(), "num_gpus": environment.num_gpus()},
    "channel_files": {ch: sorted(os.listdir(path)) for ch, path in env.channel_input_dirs.items()},
}), flush=True)
"""

TYPED_HPS = {
    "lr": 0.01,
    "epochs": 10,
    "optimizer": "adam",
    "use_bn": True,
    "shuffle": False,
    "layers": [32, 64, 128],
    "adam": {"beta1": 0.9, "amsgrad": True, "name": "x"},
    "nothing": None,
    "k": 3,  # one letter: -k
    "batch-size": 64,  # dashed: SM_HP_BATCH-SIZE
    "学习率": 0.5,  # unicode name
    "looks_like_int": "007",  # a string that json.loads would turn into a number if unquoted
    "looks_like_bool": "true",
    "empty": "",
    "shellish": "a b; rm -rf / $HOME `x`",
    "unicode_value": "café ☕",
    "nested": [{"a": [1, 2]}, {"b": None}],
    "big": 1e300,
    "neg": -3,
}

# (id, TrialContractInput kwargs, render kwargs, entry point kind)
CASES = [
    ("types-1host-2channels",
     dict(hyperparameters=TYPED_HPS,
          channels={"train": "FullyReplicated", "test": "ShardedByS3Key"},
          hosts=("algo-1",), objective_metric="validation:accuracy",
          s3_output="s3://bucket/out", environment={"HPT_EXTRA": "1"}),
     dict(host="algo-1", num_cpus=3, num_gpus=0), "py"),
    ("mpi-3hosts-algo2",
     dict(hyperparameters={"lr": 0.1, "b": "x"}, channels={"train": "ShardedByS3Key"},
          hosts=("algo-1", "algo-2", "algo-3"),
          framework_params={"sagemaker_mpi_enabled": True,
                            "sagemaker_mpi_num_of_processes_per_host": 2}),
     dict(host="algo-2", num_cpus=1, num_gpus=0), "py"),
    ("3hosts-no-distribution-modelparallel",
     dict(hyperparameters={"mp_parameters": {"partitions": 2}, "x": 1.5}, channels={},
          hosts=("algo-1", "algo-2", "algo-3"), objective_metric="loss"),
     dict(host="algo-2", num_cpus=4, num_gpus=0), "py"),
    ("gpus-shell-entry-point",
     dict(hyperparameters={"a": [1, "two"], "flag": True, "opt": {"z": 1, "a": "b"}},
          channels={"train": "FullyReplicated"}, hosts=("algo-1", "algo-2"),
          instance_type="ml.p3.8xlarge", network_interface_name="ethwe", region="eu-west-1",
          log_level=10,
          framework_params={"sagemaker_parameter_server_enabled": True},
          environment={"HPT_PYTHON": sys.executable}),
     dict(host="algo-1", num_cpus=2, num_gpus=2, gpu_ids=("2", "3")), "sh"),
    ("executable-entry-point",
     dict(hyperparameters={"mode": "ok", "n": None, "s": "--not-an-option"},
          channels={"data.v1": "FullyReplicated"}, hosts=("algo-1",),
          # what a framework image sets; the toolkit reads it into SM_FRAMEWORK_MODULE
          environment={"SAGEMAKER_TRAINING_MODULE": "my_framework.training:main"}),
     dict(host="algo-1", num_cpus=1, num_gpus=0), "exe"),
]
ENTRY_POINTS = {"py": "probe.py", "sh": "run.sh", "exe": "probe"}


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__pycache__" / "junk.pyc").write_bytes(b"x")
    (src / ".git").mkdir()
    (src / "probe.py").write_text(PROBE)
    (src / "run.sh").write_text('exec "$HPT_PYTHON" probe.py "$@"\n')
    exe = src / "probe"
    exe.write_text(f"#!{sys.executable}\n" + PROBE)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return src


def make_channels(root: Path, names) -> dict[str, Path]:
    out = {}
    for name in names:
        d = root / "data" / name
        d.mkdir(parents=True)
        (d / f"{name}-part-0.csv").write_text("1,2\n")
        out[name] = d
    return out


def process_env(c: HostContract) -> dict[str, str]:
    """Exactly the contract's variables, plus what a process needs to start at all."""
    env = dict(c.env)
    for key in ("PATH", "HOME", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


@pytest.fixture(scope="module")
def conformance(tmp_path_factory):
    """Runs every case's entry point (in parallel) and returns case id -> (contract, report)."""
    root = tmp_path_factory.mktemp("contract")
    src = make_source(root)
    started = {}
    for case_id, inp_kw, render_kw, kind in CASES:
        inp = TrialContractInput(job_name=f"tune-{case_id[:10]}-001-1a2b3c4d",
                                 entry_point=ENTRY_POINTS[kind], **inp_kw)
        case_root = root / case_id
        c = render_host_contract(inp, base_dir=str(case_root / render_kw["host"]),
                                 python=sys.executable, **render_kw)
        materialize(c, src, make_channels(case_root, inp.channels))
        proc = subprocess.Popen(list(c.argv), cwd=c.cwd, env=process_env(c),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[case_id] = (inp, render_kw, c, proc)
    results = {}
    for case_id, (inp, render_kw, c, proc) in started.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{case_id}: probe failed\n{out}\n{err}"
        line = next(l for l in out.splitlines() if l.startswith("HPT-PROBE "))
        results[case_id] = (inp, render_kw, c, json.loads(line[len("HPT-PROBE "):]))
    return results


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_toolkit_sees_exactly_the_injected_sm_variables(conformance, case_id):
    inp, kw, c, report = conformance[case_id]
    toolkit = dict(report["env"])
    machine = report["machine"]
    injected = {k: v for k, v in c.env.items() if k.startswith("SM_")}
    # Documented deviation: the toolkit counts the machine, hpt reports the host's share.
    assert toolkit["SM_NUM_CPUS"] == str(machine["num_cpus"])
    assert toolkit["SM_NUM_GPUS"] == str(machine["num_gpus"])
    training_env = json.loads(toolkit["SM_TRAINING_ENV"])
    assert (training_env["num_cpus"], training_env["num_gpus"]) == (machine["num_cpus"],
                                                                    machine["num_gpus"])
    given = {"num_cpus": kw["num_cpus"], "num_gpus": kw["num_gpus"]}
    expected = {**toolkit, "SM_NUM_CPUS": str(given["num_cpus"]),
                "SM_NUM_GPUS": str(given["num_gpus"]),
                "SM_TRAINING_ENV": env_value({**training_env, **given})}
    assert injected == expected  # same keys, byte-identical values
    assert json.loads(c.env["SM_TRAINING_ENV"])["num_cpus"] == kw["num_cpus"]
    # Variables the toolkit sets for itself from the config files: already what hpt set.
    for key, value in report["set_by_toolkit"].items():
        assert c.env[key] == value, key


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_command_line_is_the_toolkit_cmd_args(conformance, case_id):
    inp, kw, c, report = conformance[case_id]
    prefix = {"py": 2, "sh": 2, "exe": 1}[next(k for i, _, _, k in CASES if i == case_id)]
    assert report["args"] == list(c.argv[prefix:]) == report["argv"]
    assert json.loads(c.env["SM_USER_ARGS"]) == report["args"]
    assert os.path.realpath(report["cwd"]) == os.path.realpath(c.cwd)


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_tree_round_trips_hyperparameters_and_channels(conformance, case_id):
    inp, kw, c, report = conformance[case_id]
    user = {k: v for k, v in report["file_hps"].items() if not is_reserved(k)}
    assert user == inp.hyperparameters
    assert json.loads(c.env["SM_HPS"]) == inp.hyperparameters
    assert report["channel_files"] == {ch: [f"{ch}-part-0.csv"] for ch in inp.channels}
    assert report["file_hps"]["sagemaker_job_name"] == inp.job_name
    assert report["file_hps"].get("_tuning_objective_metric") == inp.objective_metric


def test_distribution_settings_reach_the_toolkit(conformance):
    def training_env(case_id):
        return json.loads(conformance[case_id][2].env["SM_TRAINING_ENV"])

    mpi = training_env("mpi-3hosts-algo2")
    assert mpi["distribution_hosts"] == ["algo-1", "algo-2", "algo-3"]
    assert (mpi["master_hostname"], mpi["is_master"]) == ("algo-1", False)
    assert mpi["additional_framework_parameters"] == {
        "sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    plain = training_env("3hosts-no-distribution-modelparallel")
    assert plain["distribution_hosts"] == [] and plain["master_hostname"] == "algo-1"
    assert plain["is_modelparallel_enabled"] is True
    assert training_env("types-1host-2channels")["is_modelparallel_enabled"] is None
    ps = training_env("gpus-shell-entry-point")
    assert ps["is_master"] is True and ps["framework_module"] is None and ps["log_level"] == 10
    gpu_env = conformance["gpus-shell-entry-point"][2].env
    assert gpu_env["CUDA_VISIBLE_DEVICES"] == "2,3" and gpu_env["SM_NUM_GPUS"] == "2"
    assert conformance["types-1host-2channels"][2].env["CUDA_VISIBLE_DEVICES"] == ""


def test_dashed_unicode_and_one_letter_names(conformance):
    env = conformance["types-1host-2channels"][2].env
    assert env["SM_HP_BATCH-SIZE"] == "64"
    assert env["SM_HP_学习率"] == "0.5"
    assert env["SM_HP_K"] == "3"
    assert env["SM_HP_OPTIMIZER"] == "adam" and env["SM_HP_LOOKS_LIKE_INT"] == "007"
    assert env["SM_HP_USE_BN"] == "true" and env["SM_HP_NOTHING"] == ""
    assert env["SM_HP_LAYERS"] == "[32,64,128]"
    args = json.loads(env["SM_USER_ARGS"])
    assert args[args.index("-k") + 1] == "3"
    assert args[args.index("--use_bn") + 1] == "True"
    assert args[args.index("--adam") + 1] == "amsgrad=True,beta1=0.9,name=x"
    assert args[args.index("--shellish") + 1] == TYPED_HPS["shellish"]


# ---------------------------------------------------------------------------- pure units


def test_reserved_keys_are_the_toolkits():
    assert RESERVED_KEYS == params.SAGEMAKER_HYPERPARAMETERS
    assert is_reserved("_tuning_objective_metric") and is_reserved("sagemaker_mpi_enabled")
    assert is_reserved("default_user_module_name")
    assert not is_reserved("lr") and not is_reserved("my_sagemaker_flag")


@pytest.mark.parametrize("value", ["adam", "007", "true", "null", "", "café ☕", 0, 64, -1, 0.01,
                                   1e-8, 2.5e300, True, False, None, [32, 64], [],
                                   {"a": 1, "b": [True, None]}, {}])
def test_encode_hyperparameters_round_trips_through_json_loads(value):
    encoded = encode_hyperparameters({"v": value})["v"]
    assert isinstance(encoded, str)
    decoded = json.loads(encoded)
    assert decoded == value and type(decoded) is type(value)


def test_encode_hyperparameters_writes_numbers_as_json_text_and_strings_quoted():
    assert encode_hyperparameters({"lr": 0.01, "b": 64, "t": True, "o": "adam"}) == {
        "lr": "0.01", "b": "64", "t": "true", "o": '"adam"'}
    with pytest.raises(ValueError, match="'bad'.*not JSON serializable"):
        encode_hyperparameters({"bad": {1, 2}})


@pytest.mark.parametrize("value", ["adam", "", "é", None, 0.01, 64, True, [32, 64],
                                   {"b": 1, "a": "é"}, b"raw"])
def test_env_value_is_the_toolkits_encoding(value):
    assert env_value(value) == mapping.to_env_vars({"x": value})["SM_X"]


def test_env_value_examples():
    assert env_value("adam") == "adam"
    assert env_value(None) == ""
    assert env_value(0.01) == "0.01"
    assert env_value([32, 64]) == "[32,64]"
    assert env_value(True) == "true"
    assert env_value({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'


def test_user_args_is_the_toolkits_to_cmd_args():
    hps = {"lr": 0.01, "k": 3, "use-bn": True, "opt": {"z": 1, "a": False}, "none": None,
           "layers": [1, 2], "name": "x y"}
    assert user_args(hps) == mapping.to_cmd_args(hps)
    assert user_args(hps) == ["-k", "3", "--layers", "[1, 2]", "--lr", "0.01", "--name", "x y",
                              "--none", "", "--opt", "a=False,z=1", "--use-bn", "True"]


def trial(**kw) -> TrialContractInput:
    base = dict(job_name="job-001-abcdef12", entry_point="train.py",
                hyperparameters={"lr": 0.1}, channels={"train": "FullyReplicated"},
                hosts=("algo-1",))
    return TrialContractInput(**{**base, **kw})


def render(inp=None, **kw) -> HostContract:
    args = dict(host="algo-1", base_dir="/work/trials/job/algo-1", num_cpus=1, num_gpus=0)
    return render_host_contract(inp or trial(), **{**args, **kw})


def test_reserved_keys_never_reach_the_script():
    c = render(trial(objective_metric="acc", s3_output="s3://b/o",
                     framework_params={"sagemaker_mpi_enabled": True}))
    file_hps = json.loads(c.files["input/config/hyperparameters.json"])
    assert set(RESERVED_KEYS) - {"default_user_module_name"} <= set(file_hps)
    assert file_hps["sagemaker_mpi_enabled"] == "true"
    assert file_hps["sagemaker_enable_cloudwatch_metrics"] == "false"
    assert json.loads(c.env["SM_HPS"]) == {"lr": 0.1}
    assert json.loads(c.env["SM_USER_ARGS"]) == ["--lr", "0.1"]
    assert [k for k in c.env if k.startswith("SM_HP_")] == ["SM_HP_LR"]
    assert json.loads(c.env["SM_FRAMEWORK_PARAMS"]) == {"sagemaker_mpi_enabled": True}
    assert c.argv == ("python", "train.py", "--lr", "0.1")
    assert "sagemaker_s3_output" not in json.loads(render().files["input/config/hyperparameters.json"])


def test_in_container_paths_point_into_opt_ml():
    c = render(in_container=True, base_dir="/data/trials/job/algo-1/")
    assert c.base_dir == "/data/trials/job/algo-1"
    assert "SAGEMAKER_BASE_DIR" not in c.env
    assert c.env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert c.env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert c.cwd == "/opt/ml/code"
    assert json.loads(c.files["input/config/hyperparameters.json"])[
        "sagemaker_submit_directory"] == '"/opt/ml/code"'
    assert not any("/data/trials" in v for v in c.env.values())
    # In a container the engine pins devices (docker --gpus); ids are optional there.
    assert "CUDA_VISIBLE_DEVICES" not in render(in_container=True, num_gpus=2).env
    local = render()
    assert local.env["SAGEMAKER_BASE_DIR"] == "/work/trials/job/algo-1"
    assert local.env["SM_OUTPUT_INTERMEDIATE_DIR"] == "/work/trials/job/algo-1/output/intermediate"
    assert local.cwd == "/work/trials/job/algo-1/code"


def test_entry_point_kinds_get_argv_without_a_shell_string():
    hps = {"cmd": "; rm -rf / #"}
    assert render(trial(hyperparameters=hps)).argv == ("python", "train.py", "--cmd", "; rm -rf / #")
    assert render(trial(entry_point="bin/train.sh", hyperparameters=hps)).argv == (
        "/bin/sh", "bin/train.sh", "--cmd", "; rm -rf / #")
    assert render(trial(entry_point="train", hyperparameters=hps)).argv == (
        "./train", "--cmd", "; rm -rf / #")


def test_render_is_deterministic_and_pure():
    assert render() == render()
    for name in ("os", "time", "pathlib", "Path", "datetime"):
        assert not hasattr(contract_module, name)


@pytest.mark.parametrize("inp_kw, render_kw, message", [
    (dict(hyperparameters={"sagemaker_mpi_enabled": True}), {}, "reserved"),
    (dict(hyperparameters={"_tuning_objective_metric": "x"}), {}, "reserved"),
    (dict(hyperparameters={"lr": 1, "LR": 2}), {}, "SM_HP_LR"),
    (dict(hyperparameters={"a=b": 1}), {}, "without '='"),
    (dict(entry_point="../train.py"), {}, "entry_point"),
    (dict(entry_point="-c.py"), {}, "entry_point"),
    (dict(entry_point="/abs/train.py"), {}, "entry_point"),
    (dict(entry_point="my train.py"), {}, "entry_point"),
    (dict(channels={"../x": "FullyReplicated"}), {}, "channel name"),
    (dict(channels={"train": "Sharded"}), {}, "S3DistributionType"),
    (dict(channels={"train": "FullyReplicated", "TRAIN": "FullyReplicated"}), {}, "SM_CHANNEL_TRAIN"),
    (dict(hosts=("algo-1", "algo-1")), {}, "distinct"),
    ({}, dict(host="algo-2"), "not one of"),
    ({}, dict(num_gpus=2, gpu_ids=("0",)), "gpu_ids"),
    ({}, dict(num_gpus=1), "gpu_ids"),
    ({}, dict(base_dir="relative/dir"), "absolute"),
    (dict(environment={"CUDA_VISIBLE_DEVICES": "0"}), {}, "CUDA_VISIBLE_DEVICES"),
    (dict(environment={"SM_MODEL_DIR": "/x"}), {}, "SM_MODEL_DIR"),
    (dict(environment={"X": 1}), {}, "must be a string"),
    (dict(framework_params={"mpi": True}), {}, "framework_params"),
    (dict(framework_params={"sagemaker_program": "x.py"}), {}, "framework_params"),
])
def test_invalid_inputs_are_refused_with_the_reason(inp_kw, render_kw, message):
    with pytest.raises(ValueError, match=message):
        render(trial(**inp_kw), **render_kw)


# ----------------------------------------------------------------------------- materialize


def test_materialize_builds_the_tree(tmp_path):
    src = make_source(tmp_path)
    channels = make_channels(tmp_path, ["train"])
    single = tmp_path / "labels.csv"
    single.write_text("y\n")
    inp = trial(channels={"train": "FullyReplicated", "labels": "FullyReplicated",
                          "s3only": "ShardedByS3Key"})
    c = render(inp, base_dir=str(tmp_path / "job" / "algo-1"))
    materialize(c, src, {**channels, "labels": single})
    materialize(c, src, {**channels, "labels": single})  # idempotent: a retry rewrites it
    base = Path(c.base_dir)
    for rel in c.dirs:
        assert (base / rel).is_dir(), rel
    for rel, content in c.files.items():
        assert (base / rel).read_text() == content
    assert (base / "input/data/train").is_symlink()
    assert (base / "input/data/train/train-part-0.csv").read_text() == "1,2\n"
    assert (base / "input/data/labels/labels.csv").read_text() == "y\n"
    assert not (base / "input/data/s3only").is_symlink()
    assert (base / "code/probe.py").read_text() == PROBE
    assert not (base / "code/__pycache__").exists() and not (base / "code/.git").exists()
    assert not list(base.rglob("*.tmp"))


def test_materialize_never_copies_the_folder_that_holds_the_trial(tmp_path):
    """source_dir: . with the experiments folder inside it must not copy itself forever."""
    src = make_source(tmp_path)
    c = render(trial(), base_dir=str(src / "experiments" / "job" / "algo-1"))
    materialize(c, src, {})
    code = Path(c.base_dir) / "code"
    assert (code / "probe.py").is_file() and not (code / "experiments").exists()


@pytest.mark.parametrize("dirs, files", [
    (("../escape",), {}),
    (("code/../../escape",), {}),
    ((), {"../escape.json": "{}"}),
    ((), {"/tmp/escape.json": "{}"}),
])
def test_materialize_refuses_to_write_outside_base_dir(tmp_path, dirs, files):
    base = tmp_path / "base"
    c = HostContract(host="algo-1", base_dir=str(base), dirs=dirs, files=files, env={},
                     argv=("x",), cwd=str(base / "code"))
    with pytest.raises(ValueError, match="refusing"):
        materialize(c, make_source(tmp_path), {})
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape.json").exists()


def test_materialize_refuses_a_symlink_in_the_tree_that_points_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    c = render(base_dir=str(tmp_path / "base"))
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "input").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the host tree"):
        materialize(c, make_source(tmp_path), {})
    assert list(outside.iterdir()) == []


def test_materialize_rejects_unknown_channels_and_missing_data(tmp_path):
    src = make_source(tmp_path)
    c = render(base_dir=str(tmp_path / "base"))
    with pytest.raises(ValueError, match="does not have"):
        materialize(c, src, {"nope": tmp_path})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        materialize(c, src, {"train": tmp_path / "missing"})


def test_config_files_are_the_documented_ones():
    c = render(trial(hosts=("algo-1", "algo-2"),
                     channels={"train": "FullyReplicated", "test": "ShardedByS3Key"}),
               host="algo-2")
    assert json.loads(c.files["input/config/resourceconfig.json"]) == {
        "current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0",
        "current_instance_type": "local", "current_group_name": "homogeneousCluster",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "local",
                             "hosts": ["algo-1", "algo-2"]}]}
    file = {"TrainingInputMode": "File", "RecordWrapperType": "None"}
    assert json.loads(c.files["input/config/inputdataconfig.json"]) == {
        "test": {**file, "S3DistributionType": "ShardedByS3Key"},
        "train": {**file, "S3DistributionType": "FullyReplicated"}}
    for content in c.files.values():
        assert content == json.dumps(json.loads(content), indent=2, sort_keys=True)
    assert c.dirs == ("code", "input/config", "input/data/test", "input/data/train", "model",
                      "output/data", "output/intermediate", "checkpoints")
