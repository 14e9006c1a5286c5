"""Early stopping and completion: when a training job or the whole tuning job ends early.

`protocol.py` is hpt's scheduler protocol (a Decision per result, the events of a trial),
`rules/` the early-stopping rules (a registry: `early_stopping:` choices), `median.py`
SageMaker's median rule and `promotion.py` promotion-based ASHA (hpt's own schedulers),
`tune_adapter.py` Ray Tune's schedulers behind hpt's protocol and hpt's behind Tune's,
`completion.py` the completion criteria, `control.py` what ends a tuning job (hpt stop,
signals, criteria, deadline), `scheduler.py` the scheduler and stopper of a space. Optuna's
pruners do not act here: early stopping is a scheduler of this package.
"""
