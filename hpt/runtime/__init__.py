"""Where a training job runs and how hpt observes it.

    api.py              the protocol of a training job and a runtime's registration types
    runtimes/           the registry: one module per `runtime:` (local, docker, sagemaker)
    observed_job.py     what hpt observes of any job: metrics.jsonl, the objective's stream,
                        max runtime, the objective never matched, stop, the record
    local_job.py        how a local/docker job executes: its hosts here and in host actors
    sagemaker_job.py    how a SageMaker training job executes: the request, polling, logs
    contract.py, tree.py, encoding.py   SageMaker's training contract for one host (pure)
    distribution_plan.py                the processes every host runs (pure)
    host.py, host actors in ray_hosts.py, processes.py (one process group, its log pumps)
    containers.py, docker_commands.py, container_engine.py   containers, their engine argv,
                        and an engine of hpt's own (`python -m hpt.runtime.container_engine`)
    pushed_metrics.py   the metrics file a script may append to
    channels.py, artifacts.py           s3:// channels in, model and checkpoints out
    warm/               the warm interpreter (trainer.warm_start)
"""
