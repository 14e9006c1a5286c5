"""The Ray Tune adapter: one Tune trial = one training job.

`tuner.py` builds the Tuner of a tuning job (searcher, scheduler, stoppers, the trial's Ray
resources from its runtime), `trainable.py` runs one training job in a (reused) Tune actor
through the runtime registry, `callbacks.py` turns Tune's trial events into the journal,
the table and the live view. The Optuna searcher (hpt/search) and the schedulers
(hpt/schedule) are Tune's interfaces too; nothing else in hpt drives Tune.
"""

import logging
import os

# Set before Ray Tune reads them (at its import, or when a Tuner starts):
# Tune's strict metric check would reject a final result of a job that failed before its
# objective was ever printed; such results are legitimate here.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# The journal is the record of a tuning job; Tune's own CSV/JSON result files would be noise.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# hpt's view is the console output; Tune's legacy reporter at verbose=0 prints nothing (the
# new output engine prints its configuration table regardless of verbosity).
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C is hpt's to handle (schedule/control.py): trials end Stopped, the job resumable.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

# Tuner.fit() ends by reading Tune's per-trial result files, which hpt turns off (the journal
# is the record); its warning about each missing file would bury hpt's summary.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
