"""hpt's packages are layers: each imports only from the packages below it (or itself), so a
reader can learn hpt bottom-up and no change to a lower layer needs one above it. Imports
inside functions count too: a lazy import is still a dependency."""

import ast
from pathlib import Path

HPT = Path(__file__).resolve().parent.parent / "hpt"

# Bottom first. One line per package: what it is.
LAYERS = [
    "core",        # the vocabulary: names (schema), a job's status and record, errors, words
    "processes",   # nothing outlives hpt: the reaper and its sidecar
    "experiment",  # the durable record: store, journal, table, best so far, resume
    "search",      # what to try next: Optuna strategies, the searcher, the space's points
    "schedule",    # when to stop: early-stopping rules, completion criteria, promotion
    "runtime",     # how one training job executes: contract, hosts, containers, runtimes
    "spacefile",   # the model of space.yaml: load, validate, SageMaker JSON in and out
    "live",        # what a running job shows: the terminal view, Ray dashboard metrics
    "cluster",     # the Ray a job runs on: started or joined, and noticing it is gone
    "controller",  # running a tuning job's trials: hpt's own loop or Ray Tune's
    "report",      # reading a job back: table, summary, Pareto front, plots, HTML
    "tracking",    # sending a job to MLflow
    "launcher",    # hpt launch / hpt rerun: a tuning job from a space.yaml
    "serving",     # hpt serve: the best model behind a SageMaker-style endpoint
    "api",         # hpt api: the SageMaker API over all of the above
    "cli",         # the hpt command
]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "hpt" or name.startswith("hpt.")}


def test_every_package_is_a_layer_and_the_layers_list_every_package():
    packages = {p.name for p in HPT.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    loose = sorted(p.name for p in HPT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []


def test_no_import_runs_back_up_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for path in sorted(HPT.rglob("*.py")):
        parts = path.relative_to(HPT).parts
        if len(parts) == 1:
            continue  # hpt/__init__.py and __main__.py sit above every layer
        own = parts[0]
        for module in _imports(path):
            target = module.split(".")[1] if "." in module else None
            if target is None or target not in rank:
                upward.append(f"{path.relative_to(HPT)} imports {module} (not a layer)")
            elif rank[target] > rank[own]:
                upward.append(f"{path.relative_to(HPT)} ({own}) imports {module} ({target})")
    assert upward == []
