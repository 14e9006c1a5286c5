"""The warm interpreter (`trainer.warm_start: true`): a pre-started Python that has already
imported the trainer's heavy modules (torch, numpy) forks one process per training job and
runs the entry point as `__main__`, so a trial starts in milliseconds instead of seconds.

The forked process looks to the script like `python train.py ARGS` started cold: its own
session and process group, the trial's argv, environment, cwd, stdin from /dev/null, stdout
and stderr on the launcher's pipes, `sys.path[0]` = the script's folder, Python's exit-code
and traceback rules. Known differences (README, "Warm interpreter"): modules the warm
interpreter preloaded are already in `sys.modules` (imported under the launcher's environment;
hpt re-applies OMP_NUM_THREADS through torch and reseeds numpy's global generator), the hash
seed is shared between trials, and objects still alive at exit are not finalised (their
`__del__` does not run; Python does not promise it either).

Protocol (wire.py), one Unix-socket connection per process:
  client -> server  4-byte length + JSON {argv, env, cwd}, with the stdout/stderr pipe ends
                    attached (SCM_RIGHTS)
  server -> client  b'{"pid": N}\\n' once forked, b'{"returncode": R}\\n' when it ended
  the client hangs up early -> the server SIGKILLs the process group (it dies with its owner)

Modules: `preload.py` (what to import, whether forking is safe), `fork_server.py` (the warm
interpreter: accepts requests, forks), `child.py` (the forked child becoming
`python script ARGS`), `client.py` (the launcher's side: `WarmInterpreter`, `WarmProcess`).
"""

from hpt.runtime.warm.child import die_with_parent, dying_with_parent
from hpt.runtime.warm.client import WarmInterpreter, WarmProcess
from hpt.runtime.warm.preload import can_run_warm, modules_to_preload

__all__ = ["WarmInterpreter", "WarmProcess", "can_run_warm", "die_with_parent",
           "dying_with_parent", "modules_to_preload"]
