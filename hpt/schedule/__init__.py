"""Early stopping and completion: when a training job or the whole tuning job ends early.

`rules/` holds the early-stopping rules (a registry: `early_stopping:` choices), `median.py`
SageMaker's median rule as a Tune scheduler, `completion.py` the completion criteria,
`control.py` what ends a tuning job (hpt stop, signals, criteria, deadline), `scheduler.py`
the scheduler and stopper of a space. Optuna's pruners do not act under Tune: early
stopping is a Tune scheduler.
"""
