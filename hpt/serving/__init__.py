"""`hpt serve`: a tuning job's models behind a SageMaker-style endpoint (variants, shadow,
canary rollout, metrics). Plans are pure (plan.py, canary.py, stats.py); I/O lives in
archive.py, backends.py, router.py and run.py."""
