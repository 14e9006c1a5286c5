"""runtime: docker -- the pure command lines: docker run for one host (image, /opt/ml mount,
env, GPUs, CPUs, network, labels, `train`), stop, remove, the trial's network; docker and
podman. No engine is needed: the argv is checked as docker's own parser would read it."""

import json
import subprocess

import pytest

from hpt.runtime.contract import TrialContractInput, render_host_contract
from hpt.runtime.docker_commands import (ContainerPlan, container_env, container_name, labels_for,
                                network_create_argv, network_name, network_remove_argv,
                                remove_argv, run_argv, secret_env, stop_argv)
from helpers import CNN_IMAGE, engine_holding, why_no_image

HOSTILE = {
    "SM_HP_NAME": "$(id) `id` ; rm -rf ~ && echo pwned",
    "SM_HP_QUOTES": "it's \"quoted\" and 'single'",
    "SM_HP_NEWLINE": "line1\nline2\n--env EVIL=1",
    "SM_HP_SPACES": "  leading and trailing  ",
    "SM_HP_EQUALS": "a=b=c",
    "SM_HP_FLAG": "--privileged",
    "SM_HP_BATCH-SIZE": "32",  # SageMaker keeps '-' in SM_HP_ names
    "SM_HP_EMPTY": "",
}


def plan(**overrides) -> ContainerPlan:
    fields = dict(engine="docker", image="hpt-cnn:latest", name="job-001-abcd1234-algo-1",
                  host_tree="/exp/job/job-001-abcd1234/algo-1", hostname="algo-1",
                  env={"SM_MODEL_DIR": "/opt/ml/model"}, cpus=2.0,
                  labels=labels_for("job", "job-001-abcd1234", "algo-1"))
    fields.update(overrides)
    return ContainerPlan(**fields)


def parse_run(argv: list[str]) -> dict:
    """Reads a `docker run` argv the way the docker CLI does (flags with one value)."""
    assert argv[1] == "run"
    flags: dict[str, list[str]] = {}
    switches = {"--rm", "--init", "--detach"}
    i = 2
    while argv[i].startswith("--"):
        if argv[i] in switches:
            flags.setdefault(argv[i], []).append("")
            i += 1
        else:
            flags.setdefault(argv[i], []).append(argv[i + 1])
            i += 2
    env = dict(entry.split("=", 1) for entry in flags.get("--env", []))
    return {"engine": argv[0], "flags": flags, "env": env, "image": argv[i],
            "command": argv[i + 1:]}


def test_a_cpu_host_runs_train_with_its_tree_at_opt_ml():
    argv = run_argv(plan())
    parsed = parse_run(argv)
    assert parsed["engine"] == "docker" and parsed["image"] == "hpt-cnn:latest"
    assert parsed["command"] == ["train"]
    flags = parsed["flags"]
    assert "--rm" in flags and "--init" in flags
    assert flags["--name"] == ["job-001-abcd1234-algo-1"]
    assert flags["--hostname"] == ["algo-1"]
    assert flags["--cpus"] == ["2"]
    assert flags["--shm-size"] == ["1g"]
    assert flags["--mount"] == ["type=bind,source=/exp/job/job-001-abcd1234/algo-1,"
                                "target=/opt/ml"]
    assert "--gpus" not in flags and "--device" not in flags and "--network" not in flags
    assert sorted(flags["--label"]) == ["hpt.host=algo-1", "hpt.training-job=job-001-abcd1234",
                                        "hpt.tuning-job=job"]


def test_gpus_are_exactly_rays_ids_and_renumbered_inside():
    env = container_env({"CUDA_VISIBLE_DEVICES": "2,3", "SAGEMAKER_BASE_DIR": "/x"}, ("2", "3"))
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}  # no base dir: the tree is /opt/ml
    docker = parse_run(run_argv(plan(gpu_ids=("2", "3"), env=env)))
    assert docker["flags"]["--gpus"] == ['"device=2,3"']
    assert docker["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    podman = parse_run(run_argv(plan(engine="podman", gpu_ids=("2", "3"), env=env)))
    assert podman["engine"] == "podman"
    assert podman["flags"]["--device"] == ["nvidia.com/gpu=2", "nvidia.com/gpu=3"]
    assert "--gpus" not in podman["flags"]
    assert container_env({}, ())["CUDA_VISIBLE_DEVICES"] == ""  # CPU: no GPU visible


def test_multi_host_trials_share_a_network_and_resolve_hosts_by_name():
    net = network_name("job-001-abcd1234")
    assert net == "job-001-abcd1234-net"
    hosts = [parse_run(run_argv(plan(name=container_name("job-001-abcd1234", h), hostname=h,
                                     network=net))) for h in ("algo-1", "algo-2")]
    for host, parsed in zip(("algo-1", "algo-2"), hosts):
        assert parsed["flags"]["--network"] == [net]
        assert parsed["flags"]["--network-alias"] == [host]
        assert parsed["flags"]["--hostname"] == [host]
        assert parsed["flags"]["--name"] == [f"job-001-abcd1234-{host}"]
    labels = labels_for("job", "job-001-abcd1234", "net")
    assert network_create_argv("docker", net, labels) == [
        "docker", "network", "create", "--label", "hpt.host=net",
        "--label", "hpt.training-job=job-001-abcd1234", "--label", "hpt.tuning-job=job", net]
    assert network_remove_argv("podman", net) == ["podman", "network", "rm", net]


def test_hostile_values_reach_the_container_byte_for_byte_as_single_arguments():
    argv = run_argv(plan(env=HOSTILE))
    parsed = parse_run(argv)
    assert parsed["env"] == HOSTILE
    # Each variable is one argv element right after its own --env: nothing for a shell.
    for key, value in HOSTILE.items():
        index = argv.index(f"{key}={value}")
        assert argv[index - 1] == "--env"
    assert parsed["image"] == "hpt-cnn:latest" and parsed["command"] == ["train"]


def test_secrets_are_passed_by_name_and_never_appear_in_the_argv():
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG", "MY_API_TOKEN": "tok-123",
           "SM_HP_LR": "0.1"}
    container = plan(env=env)
    argv = run_argv(container)
    assert not any("wJalrXUtnFEMI" in a or "tok-123" in a for a in argv)
    assert argv[argv.index("AWS_SECRET_ACCESS_KEY") - 1] == "--env"
    assert argv[argv.index("MY_API_TOKEN") - 1] == "--env"
    assert "SM_HP_LR=0.1" in argv
    assert secret_env(container) == {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
                                     "MY_API_TOKEN": "tok-123"}


@pytest.mark.parametrize("env", [{"BAD=NAME": "x"}, {"": "x"}, {"NUL": "a\0b"}])
def test_variables_a_container_cannot_take_are_refused(env):
    with pytest.raises(ValueError, match="cannot be passed to a container"):
        run_argv(plan(env=env))


@pytest.mark.parametrize("overrides, message", [
    ({"engine": "lxc"}, "container engine"), ({"image": ""}, "trainer.image"),
    ({"host_tree": "relative/tree"}, "absolute"), ({"host_tree": "/a:b"}, "bind-mounted")])
def test_bad_plans_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ValueError, match=message):
        run_argv(plan(**overrides))


def test_local_channels_are_mounted_read_only_at_their_channel_folder():
    parsed = parse_run(run_argv(plan(channels=(("/data/digits/train", "train"),
                                               ("/data/digits/test", "test")))))
    assert parsed["flags"]["--mount"][1:] == [
        "type=bind,source=/data/digits/train,target=/opt/ml/input/data/train,readonly",
        "type=bind,source=/data/digits/test,target=/opt/ml/input/data/test,readonly"]
    with pytest.raises(ValueError, match="bind-mounted"):
        run_argv(plan(channels=(("data/relative", "train"),)))


def test_stop_and_remove_leave_nothing_behind():
    assert stop_argv("docker", "c", 10) == ["docker", "stop", "-t", "10", "c"]
    assert stop_argv("podman", "c", 0.5) == ["podman", "stop", "-t", "0", "c"]
    assert remove_argv("docker", "c") == ["docker", "rm", "--force", "c"]
    with pytest.raises(ValueError):
        container_name("job/../x", "algo-1")


def test_the_contract_inside_a_container_points_into_opt_ml():
    inp = TrialContractInput(job_name="job-001-abcd1234", entry_point="train.py",
                             hyperparameters={"lr": 0.1}, channels={"train": "FullyReplicated"},
                             hosts=("algo-1",), objective_metric="acc")
    contract = render_host_contract(inp, host="algo-1", base_dir="/exp/job-001-abcd1234/algo-1",
                                    num_cpus=2, num_gpus=1, gpu_ids=("3",), in_container=True)
    env = container_env(contract.env, ("3",))
    assert "SAGEMAKER_BASE_DIR" not in env
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["SM_NUM_GPUS"] == "1"
    parsed = parse_run(run_argv(plan(env=env, gpu_ids=("3",), host_tree=contract.base_dir)))
    assert parsed["env"] == env and parsed["flags"]["--gpus"] == ['"device=3"']


IMAGE = CNN_IMAGE


def test_a_missing_image_skips_the_real_container_test_and_never_pulls(tmp_path):
    standin = tmp_path / "engine"
    calls = tmp_path / "calls"
    standin.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                       f"[ \"$1 $2\" = \"image inspect\" ] && exit 1\nexit 0\n")
    standin.chmod(0o755)
    reason = why_no_image(str(standin), IMAGE)
    assert reason and IMAGE in reason and "never pull" in reason
    assert calls.read_text().split() == ["image", "inspect", IMAGE]  # asked, nothing pulled


def test_a_real_container_sees_its_tree_and_environment(tmp_path):
    engine = engine_holding(IMAGE)
    tree = tmp_path / "algo-1"
    (tree / "model").mkdir(parents=True)
    argv = run_argv(plan(engine=engine, image=IMAGE, host_tree=str(tree),
                         name=f"hpt-test-{tmp_path.name[-8:]}", env=HOSTILE,
                         command=("python", "-c", "import json, os; json.dump(dict(os.environ),"
                                  " open('/opt/ml/model/env.json', 'w'))")))
    subprocess.run(argv, check=True, timeout=300)
    import json
    seen = json.loads((tree / "model" / "env.json").read_text())
    assert {k: seen[k] for k in HOSTILE} == HOSTILE


def _host_commands(mode: str, hosts=("algo-1", "algo-2"), toolkit=True):
    from hpt.runtime.containers import ContainerSettings, container_addresses, container_commands
    from hpt.runtime.distribution_plan import plan_trial, processes_on_host

    inp = TrialContractInput(job_name="job-001-abcd1234", entry_point="train.py",
                             hyperparameters={"lr": 0.1}, channels={}, hosts=hosts)
    contract = render_host_contract(inp, host="algo-1", base_dir="/exp/job-001-abcd1234/algo-1",
                                    num_cpus=1, num_gpus=0, python="python", in_container=True)
    port, addresses = container_addresses(hosts, processes_on_host(mode, 1))
    plans = plan_trial(mode, addresses, contract.argv, master_port=port)
    settings = ContainerSettings("docker", "img", "job", 10, network="job-001-abcd1234-net",
                                 toolkit=toolkit)
    return container_commands(contract, plans[0], 1, settings)


def test_a_multi_process_host_is_a_keeper_container_and_one_exec_per_process():
    commands = _host_commands("parameter_server")
    keeper = parse_run(commands.keeper)
    assert keeper["image"] == "img" and keeper["command"] == ["sleep", "infinity"]
    assert "--detach" in commands.keeper and keeper["flags"]["--network"] == ["job-001-abcd1234-net"]
    assert keeper["flags"]["--network-alias"] == ["algo-1"]
    assert "TF_CONFIG" not in keeper["env"]  # each process brings its own
    worker, server = commands.processes
    assert worker[:2] == ["docker", "exec"] and worker[-2:] == ["job-001-abcd1234-algo-1", "train"]
    tf_config = json.loads(next(a.split("=", 1)[1] for a in server if a.startswith("TF_CONFIG=")))
    assert tf_config["task"] == {"type": "ps", "index": 0}
    assert tf_config["cluster"]["ps"] == ["algo-1:2223", "algo-2:2223"]
    assert "MASTER_ADDR=algo-1" in worker and "MASTER_PORT=7777" in worker
    # PID 1 is the keeper itself, which survives the SIGTERM its processes get at a stop.
    assert "--init" not in commands.keeper
    assert commands.stop == ["docker", "exec", "job-001-abcd1234-algo-1", "sh", "-c",
                             "kill -TERM -1"]


def test_data_parallel_ranks_run_the_entry_point_not_the_toolkits_mpirun():
    commands = _host_commands("data_parallel", toolkit=False)
    assert commands.keeper is None  # one process: the container's own command
    run = parse_run(commands.processes[0])
    assert run["command"] == ["python", "train.py", "--lr", "0.1"]
    assert run["flags"]["--workdir"] == ["/opt/ml/code"]
    assert run["env"]["RANK"] == "0" and run["env"]["MASTER_ADDR"] == "algo-1"


def test_a_container_sees_its_share_of_cpus_as_its_own():
    from hpt.runtime.docker_commands import online_cpus

    assert online_cpus(1) == "0" and online_cpus(4) == "0-3"
    parsed = parse_run(run_argv(plan(cpus_online="/exp/job/.cpus-online-2")))
    assert ("type=bind,source=/exp/job/.cpus-online-2,target=/sys/devices/system/cpu/online,"
            "readonly") in parsed["flags"]["--mount"]


def test_a_container_entrypoint_replaces_train_and_downloaded_channels_are_writable():
    """SageMaker's ContainerEntrypoint/ContainerArguments (what the SDK 3.x ModelTrainer
    sends): `--entrypoint` and the rest as the command; hpt's own copy of an s3:// channel
    mounts read-write (the SDK's driver channel chmods its script), a local folder
    read-only."""
    from hpt.runtime.containers import ContainerSettings, _in_container

    settings = ContainerSettings("docker", "img", "job", entrypoint=("/bin/bash",),
                                 arguments=("-c", "chmod +x x.sh && ./x.sh"))
    command, workdir = _in_container(None, settings)
    assert command == ("-c", "chmod +x x.sh && ./x.sh") and workdir is None
    parsed = parse_run(run_argv(plan(
        entrypoint="/bin/bash", command=command,
        channels=(("/data/s3-copy", "sm_drivers"), ("/home/me/data", "train")),
        writable_channels=frozenset({"sm_drivers"}))))
    assert parsed["flags"]["--entrypoint"] == ["/bin/bash"]
    assert parsed["command"] == ["-c", "chmod +x x.sh && ./x.sh"]
    mounts = parsed["flags"]["--mount"]
    assert "type=bind,source=/data/s3-copy,target=/opt/ml/input/data/sm_drivers" in mounts
    assert ("type=bind,source=/home/me/data,target=/opt/ml/input/data/train,readonly"
            in mounts)
