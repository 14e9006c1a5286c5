"""The local host runner: real processes, process groups, timeouts, failure mapping."""

import os
import sys
import tarfile
import textwrap
import time
from pathlib import Path


from hpt.core.metric_parser import MetricParser
from hpt.runtime.host_process import HostProcess, failure_reason, pack_model, MAX_LINE_BYTES


def alive(pid: int) -> bool:
    """True if pid runs; a zombie (killed, not yet reaped by its new parent) is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_script(tmp_path, body, timeout=20.0):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent(body))
    proc = HostProcess([sys.executable, str(script)], dict(os.environ), str(tmp_path),
                       tmp_path / "host.log")
    proc.start()
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            line = proc.next_line(timeout=0.2)
        except EOFError:
            break
        if line is not None:
            lines.append(line)
    return proc, lines


def test_streams_both_outputs_in_order_to_log_and_queue(tmp_path):
    proc, lines = run_script(tmp_path, """
        import sys
        for i in range(5):
            print(f"epoch={i} val_acc=0.{i}", flush=True)
        print("boom", file=sys.stderr)
    """)
    assert proc.wait() == 0
    proc.close()
    assert [l.text for l in lines if l.stream == "stdout"] == [f"epoch={i} val_acc=0.{i}" for i in range(5)]
    assert [l.text for l in lines if l.stream == "stderr"] == ["boom"]
    log = (tmp_path / "host.log").read_text()
    assert "epoch=4 val_acc=0.4" in log and "boom" in log


def test_long_line_without_newline_is_cut_not_buffered_whole(tmp_path):
    proc, lines = run_script(tmp_path, """
        import sys
        sys.stdout.write("x" * (3 * 64 * 1024 + 10))
        sys.stdout.flush()
    """)
    assert proc.wait() == 0
    proc.close()
    assert len(lines) == 4
    assert all(len(l.text) <= MAX_LINE_BYTES + 40 for l in lines)
    assert lines[0].text.endswith("[hpt: line cut at 64 KiB]")


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    proc, _ = run_script(tmp_path, f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print("ready", flush=True)
        time.sleep(60)
    """, timeout=3.0)
    for _ in range(50):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    grandchild = int(pidfile.read_text())
    t0 = time.time()
    code = proc.stop(grace_seconds=0.5)
    proc.close()
    assert code == -9
    assert time.time() - t0 < 5
    time.sleep(0.2)
    assert not alive(grandchild)


def test_failure_reason_prefers_failure_file_then_stderr_tail(tmp_path):
    failure = tmp_path / "failure"

    def reason(*args):
        return failure_reason(*args).text()

    assert reason(1, failure, ["a", "ValueError: bad"]).startswith("AlgorithmError: exit code 1")
    assert "ValueError: bad" in reason(1, failure, ["a", "ValueError: bad"])
    assert "SIGSEGV" in reason(-11, failure, [])
    failure.write_text("my reason " * 300)
    text = reason(1, failure, ["ignored"])
    assert text.startswith("my reason") and len(text) == 1024


def test_pack_model_puts_contents_at_archive_root(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.pth").write_bytes(b"weights")
    (model / "sub" / "cfg.json").write_text("{}")
    archive = pack_model(model, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.pth", "sub", "sub/cfg.json"]


def test_metric_parser_keeps_every_match_and_last_is_final():
    parser = MetricParser([("validation:accuracy", r"val_acc=([0-9.]+)"),
                           ("train:loss", r"loss=([0-9.eE+-]+)")])
    parser.feed("epoch=1 loss=0.5 val_acc=0.8", 1.0)
    parser.feed("noise val_acc=nan loss=inf", 2.0)  # non-finite values are not data points
    points = parser.feed("epoch=2 loss=1e-3 val_acc=0.9", 3.0)
    assert [(p.name, p.step, p.value) for p in points] == [
        ("validation:accuracy", 2, 0.9), ("train:loss", 2, 0.001)]
    assert parser.final_values() == {"validation:accuracy": 0.9, "train:loss": 0.001}
    assert [p.value for p in parser.series["validation:accuracy"].points] == [0.8, 0.9]


def test_a_full_disk_fails_the_job_with_the_reason_and_never_blocks_the_script(
        write_space, tmp_path):
    """The log file is /dev/full: every write fails with ENOSPC, as on a full disk."""
    import os
    import time

    from hpt.runtime.job_protocol import TrialAssignment
    from hpt.runtime.local_job import LocalTrainingJob
    from hpt.spacefile import load_spec
    from helpers import faulty_space

    spec = load_spec(write_space(faulty_space(name="full")))
    trial_dir = tmp_path / "full-001-abcd1234"
    trial_dir.mkdir()
    os.symlink("/dev/full", trial_dir / "algo-1.log")
    job = LocalTrainingJob(spec, TrialAssignment(1, "full-001-abcd1234", {"mode": "ok"}),
                           trial_dir)
    began = time.time()
    job.start()
    while (progress := job.advance()).record is None:
        pass
    record = progress.record
    assert record.status == "Failed"
    assert "could not write algo-1.log: No space left on device" in record.failure_reason
    assert time.time() - began < 15  # stopped at once, not at max_runtime_seconds


def test_a_child_holding_the_pipe_does_not_keep_the_log_open_after_the_script_exits(tmp_path):
    # The child inherits stdout and sleeps: the pipe never reaches EOF while it lives. The
    # script's exit must still end the log (SageMaker ends a job with its main process).
    t0 = time.time()
    proc, lines = run_script(tmp_path, """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        print("val_acc=0.5", flush=True)
    """, timeout=20.0)
    assert time.time() - t0 < 10  # ended by the script's exit, not by the 20 s limit
    assert [line.text for line in lines][1:] == ["val_acc=0.5"]
    child = int(lines[0].text)
    assert proc.wait() == 0
    proc.close()  # the end of a job reaps what is left of its process group
    time.sleep(0.2)
    assert not alive(child)


def test_the_group_dies_with_the_process_that_started_it_even_by_sigkill(tmp_path):
    # A stand-in for a Ray worker: it starts a script whose child outlives it, then is
    # SIGKILLed (as when the launcher dies). The reaper sidecar kills the orphaned group.
    pidfile = tmp_path / "child.pid"
    starter = tmp_path / "starter.py"
    starter.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from hpt.runtime.host_process import HostProcess
        script = {str(tmp_path / "s.py")!r}
        open(script, "w").write(
            "import subprocess, sys, time\\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\\n"
            "open({str(pidfile)!r}, 'w').write(str(c.pid))\\n"
            "time.sleep(60)\\n")
        proc = HostProcess([sys.executable, script], dict(os.environ), {str(tmp_path)!r},
                           __import__("pathlib").Path({str(tmp_path / "host.log")!r}))
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(60)
    """))
    import signal
    import subprocess
    worker = subprocess.Popen([sys.executable, str(starter)], stdout=subprocess.PIPE, text=True)
    script_pid = int(worker.stdout.readline())
    deadline = time.time() + 10
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert alive(script_pid) and alive(child)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.time() + 5
    while (alive(script_pid) or alive(child)) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(script_pid) and not alive(child)


def test_cleanup_commands_run_when_the_process_that_registered_them_dies(tmp_path):
    # What a group kill cannot reach (a container, which the engine runs) is cleaned up by
    # command: registered, then run by the reaper sidecar once its process is SIGKILLed.
    import signal
    import subprocess
    done, cancelled = tmp_path / "removed", tmp_path / "cancelled"
    starter = tmp_path / "starter.py"
    starter.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from hpt.processes.reaper import REAPER
        REAPER.on_death("a", ["touch", {str(done)!r}])
        REAPER.on_death("b", ["touch", {str(cancelled)!r}])
        REAPER.cancel("b")
        print("registered", flush=True)
        time.sleep(60)
    """))
    worker = subprocess.Popen([sys.executable, str(starter)], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "registered"
    assert not done.exists()
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.time() + 10
    while not done.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert done.exists() and not cancelled.exists()


def test_a_multi_host_trial_names_the_interface_of_its_node_to_gloo_nccl_and_tensorpipe(
        monkeypatch):
    """Unset, gloo binds where the hostname resolves (127.0.0.1 in Debian's /etc/hosts), and
    a peer on another node cannot connect: hpt names the interface holding the node's IP."""
    from hpt.runtime.host import interface_of, process_env

    assert interface_of("127.0.0.1") == "lo" and interface_of("203.0.113.77") is None
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")  # the user's own choice is kept
    env = process_env({"SM_HOSTS": '["algo-1","algo-2"]'}, {}, 1, interface="eth7")
    assert env["GLOO_SOCKET_IFNAME"] == env["TP_SOCKET_IFNAME"] == "eth7"
    assert env["NCCL_SOCKET_IFNAME"] == "ib0"
    assert "GLOO_SOCKET_IFNAME" not in process_env({}, {}, 1)
