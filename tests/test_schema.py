"""hpt/core/schema.py names every column, journal event, row key and file name once, and
hpt/core/sagemaker_names.py SageMaker's reserved names: no other module of hpt/ spells one
as a string literal (single or double quotes, f-strings included; docstrings, comments and
`Literal[...]` annotations are not code that reads or writes them)."""

import ast
import re
from pathlib import Path

import pytest

from hpt.core import sagemaker_names, schema
from hpt.core.trial import TrainingJobRecord, TrialStatus, job_ended

HPT = Path(__file__).resolve().parent.parent / "hpt"
OWNERS = {"core/schema.py", "core/sagemaker_names.py", "core/trial.py"}
SAGEMAKER = frozenset(v for k, v in vars(sagemaker_names).items()
                      if k.isupper() and isinstance(v, str))
NAMES = schema.COLUMNS | schema.EVENTS | schema.FILES | schema.ENFORCED_KEYS | SAGEMAKER
# A file name (it has a dot) is spelled too when it is a word or a path segment of a literal.
INSIDE = [(n, re.compile(r"(?<![\w.-])" + re.escape(n) + r"(?![\w-])")) for n in NAMES if "." in n]


def _documentation(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            skipped.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def spelled(text: str) -> list[tuple[int, str]]:
    """(line, name) of every name of the schema spelled as a literal in a module's code."""
    tree = ast.parse(text)
    skipped = _documentation(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Constant) or \
                not isinstance(node.value, str):
            continue
        if node.value in NAMES:
            found.append((node.lineno, node.value))
        found += [(node.lineno, name) for name, pattern in INSIDE
                  if node.value != name and pattern.search(node.value)]
    return found


def test_no_module_but_the_schemas_spells_a_name():
    stray = [f"{path.relative_to(HPT)}:{line}: {name!r}"
             for path in sorted(HPT.rglob("*.py"))
             if path.relative_to(HPT).as_posix() not in OWNERS
             for line, name in spelled(path.read_text())]
    assert stray == []


@pytest.mark.parametrize("planted", [
    'row["TrainingJobName"]',
    "row['FailureReason']",
    'f"{row[\'FinalObjectiveValue\']:.3g}"',
    'ev.get("event") == "trial_started"',
    'root / "journal.jsonl"',
    'f"{root}/spec.json"',
    'glob("*/metrics.jsonl")',
    'row.get("training_job_name")',
    'hyperparameters["sagemaker_program"]',
    'channel == "ShardedByS3Key"',
    'trial_dir / "algo-1.log"',
])
def test_a_planted_literal_is_found(planted):
    assert spelled(f'"""A module."""\nx = {planted}\n') != []


# One-word keys are English too (an HTTP body's "status", a space's "metric"), so they are
# enforced where a journal line, a table row or a data point is read: a subscript or a
# .get/.pop/.setdefault of a variable named as this code base names those (one rule, by
# naming convention). AWS's own payloads spelled with the same words are named here.
JOURNAL_ROWS = {"row", "e", "ev", "event", "record", "t", "r", "ended", "earlier", "events[-1]",
                "events[0]", "trials[name]"}
DATA_POINTS = {"point", "points", "curve", "series"}
NOT_OURS = {("api/cloudwatch_logs.py", "e"),  # a CloudWatch Logs event
            ("runtime/sagemaker_job.py", "event")}  # the same, read from AWS
ONE_WORD = frozenset(k for k in schema.KEYS | schema.POINT_NAMES if "_" not in k)


def one_word_keys_spelled(text: str, module: str = "") -> list[tuple[int, str]]:
    """(line, key) of each one-word key of the schema spelled as a literal where a journal
    row or a data point is read."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Subscript):
            key, receiver = node.slice, node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("get", "pop", "setdefault") and node.args:
            key, receiver = node.args[0], node.func.value
        else:
            continue
        if not (isinstance(key, ast.Constant) and key.value in ONE_WORD):
            continue
        name = ast.unparse(receiver)
        if (name in JOURNAL_ROWS | DATA_POINTS) and (module, name) not in NOT_OURS:
            found.append((node.lineno, key.value))
    return found


def test_no_module_spells_a_one_word_key_where_it_reads_a_row_or_a_point():
    stray = [f"{path.relative_to(HPT)}:{line}: {name!r}"
             for path in sorted(HPT.rglob("*.py"))
             if path.relative_to(HPT).as_posix() not in OWNERS
             for line, name in one_word_keys_spelled(path.read_text(),
                                                     path.relative_to(HPT).as_posix())]
    assert stray == []


@pytest.mark.parametrize("planted", ['ev["event"]', 'row.get("status")', "t['hosts']",
                                     'point["value"]', 'events[-1]["time"]',
                                     'curve.pop("step")'])
def test_a_planted_one_word_key_is_found(planted):
    assert one_word_keys_spelled(f"x = {planted}\n") != []


@pytest.mark.parametrize("fine", [
    'x = 1  # the "TrainingJobName" column',
    'def f():\n    """Reads the FailureReason column of journal.jsonl."""',
    'x: Literal["FullyReplicated", "ShardedByS3Key"] = None',
    'body.get("status")',  # a one-word key is English too: enforced only on rows, points
    'f"{name}.log"',
])
def test_documentation_and_plain_words_are_not_flagged(fine):
    assert spelled(fine + "\n") == []


def test_the_groups_hold_distinct_spellings():
    groups = [schema.COLUMNS, schema.EVENTS, schema.FILES, schema.KEYS, SAGEMAKER]
    assert sum(map(len, groups)) == len(frozenset().union(*groups))
    assert set(schema.SAGEMAKER_COLUMNS) | set(schema.HPT_COLUMNS) | {
        schema.Column.FEASIBLE, schema.Column.PARETO_OPTIMAL} == schema.COLUMNS
    assert set(schema.JOB_STARTS) <= schema.EVENTS


def test_a_record_writes_the_schemas_keys():
    record = TrainingJobRecord.ended(
        trial_number=1, training_job_name="job-001-aaaaaaaa", hyperparameters={},
        status=TrialStatus.STOPPED, failure=job_ended("Stopped"), objective_value=0.5,
        objective_metric="acc", objective_steps=1, start_time=1.0, end_time=2.0,
        log_path="x", hosts=[])
    assert set(record.to_json()) - {"num_cpus"} <= schema.KEYS
