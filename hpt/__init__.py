"""hpt: SageMaker-style hyperparameter tuning jobs on your own machines or Ray cluster.

    import hpt
    df = hpt.load_experiment("digits-cnn")   # one row per training job
    hpt.load_metrics("digits-cnn")           # every metric data point (learning curves)
    hpt.best_trial("digits-cnn")             # the best job's hyperparameters and model path
    hpt.pareto_front("digits-cnn-pareto")    # a multi-objective job's Pareto-optimal jobs
"""

__version__ = "0.1.0"
__all__ = ["load_experiment", "load_metrics", "best_trial", "job_status", "list_experiments",
           "pareto_front"]


def __getattr__(name):
    # Lazy, so `hpt validate` and the trainer-side code don't pay for pandas.
    if name == "pareto_front":
        from hpt.report import front

        return front.pareto_front
    if name in __all__:
        from hpt.report import summary as report

        return getattr(report, name)
    raise AttributeError(f"module 'hpt' has no attribute {name!r}")
