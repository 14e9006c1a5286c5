"""Which controller runs a tuning job's trials.

- `local` (controller/local_controller.py): hpt drives the trials on this machine, one thread
  per running training job, with the machine's CPUs and GPUs handed out by controller/slots.py;
  the Ray that serves the dashboard starts beside it. `hpt launch` without `--address`, when each
  trial needs one bundle (one host). With `--controller local --address` the trials still run
  here, and the Ray joined (one kept running between launches) serves only the dashboard:
  its resources are not reserved, so it is for a Ray of this machine that nothing else uses.
- `tune` (controller/tune/): Ray Tune's controller places the trials on a Ray cluster's nodes:
  `--address` (a cluster joined), or trials of several hosts (its hosts are Ray actors on
  the bundles of a placement group, possibly on several nodes).

Both run the same searcher, stoppers, schedulers (the local one through hpt's scheduler protocol,
hpt/schedule/scheduler_protocol.py; Tune's in Tune's terms), recorder and retry rule, in the same
order. HPT_CONTROLLER=tune (or =local, where it can run) forces one: the test suite runs on either.
"""

from __future__ import annotations

import os

CONTROLLER_ENV = "HPT_CONTROLLER"
LOCAL, TUNE = "local", "tune"


def choose_controller(spec, runtime, address: str | None, requested: str | None = None) -> str:
    """`requested`: `hpt launch --controller` (a refusal says why it cannot run); else
    HPT_CONTROLLER (where it can run); else local on this machine, tune on a cluster."""
    several_hosts = len(runtime.bundles(spec.trainer)) != 1
    if requested == LOCAL and several_hosts:
        from hpt.core.errors import UserError

        raise UserError(f"--controller local runs every trial on this machine, but "
                        f"trainer.instance_count: {spec.trainer.instance_count} needs Ray's "
                        f"placement: drop --controller local (Ray Tune then runs the trials)")
    if pauses_trials(spec):
        return _local_for_pausing(spec, several_hosts, address, requested)
    from hpt.schedule.rules import rule_of

    tune_only = rule_of(spec.strategy, spec.early_stopping).tune_only
    if tune_only:
        if requested == LOCAL:
            from hpt.core.errors import UserError

            raise UserError(f"{spec.source_path}: {_rule_named(spec)} runs on Ray Tune's "
                            f"controller ({tune_only}): drop --controller local")
        return TUNE
    if requested:
        return requested
    forced = os.environ.get(CONTROLLER_ENV, "").strip().lower()
    if forced not in ("", LOCAL, TUNE):
        from hpt.core.errors import UserError

        raise UserError(f"{CONTROLLER_ENV}={forced!r}: write {LOCAL} or {TUNE} (or unset it)")
    if forced == TUNE or address or several_hosts:
        return TUNE
    return LOCAL


def pauses_trials(spec) -> bool:
    """Promotion mode (hpt/schedule/promotion.py): only the local controller pauses and
    promotes trials so far."""
    from hpt.schedule.rules import rule_of

    return rule_of(spec.strategy, spec.early_stopping).pauses_trials(spec.strategy_config)


def _rule_named(spec) -> str:
    """The space's setting that chose its rule: the strategy that brings it, or its own."""
    from hpt.search.strategies import STRATEGIES

    if STRATEGIES[spec.strategy].early_stopping:
        return f"strategy: {spec.strategy}"
    return f"early_stopping: {spec.early_stopping}"


def _local_for_pausing(spec, several_hosts: bool, address: str | None,
                       requested: str | None) -> str:
    from hpt.core.errors import UserError

    where = f"{spec.source_path}: strategy_config.mode: promotion"
    if several_hosts:
        raise UserError(f"{where} runs its trials on this machine, one host each, but "
                        f"trainer.instance_count is {spec.trainer.instance_count}: use "
                        f"mode: stop, or instance_count: 1")
    if requested == TUNE or (address and requested != LOCAL):
        raise UserError(f"{where} runs on the local controller (Ray Tune's does not pause "
                        f"and promote trials yet): add --controller local (with --address, "
                        f"the Ray joined serves the dashboard), or use mode: stop")
    return LOCAL
