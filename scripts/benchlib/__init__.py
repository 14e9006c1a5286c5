"""The benchmarks of scripts/bench.py, by what they time (bench.py names and runs them):

harness       what they share: the trainer scripts, spaces, folders, whole commands, emit
first_line    one trial, spawn -> its first line: launch, torch, containers
in_process    hpt's pieces against bare Optuna and /dev/null: search, metrics
jobs          whole tuning jobs against their ideal: overhead, utilisation, cnn
commands      whole commands at scale against bare Optuna and Ray Tune: startup, sweep, scale
"""
