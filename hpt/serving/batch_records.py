"""What a SageMaker batch transform does to one input object, as pure functions: split it into
records (`SplitType`), filter each (`DataProcessing.InputFilter`), pack the records into the
model's requests (`BatchStrategy`, `MaxPayloadInMB`), take one output per record from the
answers, join each with its input (`JoinSource: Input`), filter that (`OutputFilter`) and
assemble the object's output (`AssembleWith`). The I/O (S3, the model's HTTP) is the runner's
(hpt/api/transform_runner.py); `transform_object` takes the model as a function.

Records keep their bytes when no filter or join asks to read them, so any content type
passes (an `application/x-npy` object with `SplitType: None` is one record, sent as it is).
Reading a record follows its content type: `text/csv` rows are lists of their fields (as
strings, so a row comes back as it was), JSON and JSON Lines are parsed. A joined record is
a CSV row when both the input and the model's answer are CSV, else JSON: an input object gets
the answer as its `SageMakerOutput` member; any other input becomes `{"SageMakerInput": ...,
"SageMakerOutput": ...}`, as SageMaker writes them.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from hpt.serving.jsonpath import PathError, Step, compile_path, select

CSV_TYPES = ("text/csv",)
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines",
              "application/json-lines")
SPLIT_TYPES = ("None", "Line")
STRATEGIES = ("SingleRecord", "MultiRecord")
ASSEMBLE = ("None", "Line")
JOIN_SOURCES = ("None", "Input")
DEFAULT_MAX_PAYLOAD_MB = 6  # SageMaker's default
DEFAULT_STRATEGY = "SingleRecord"  # every model answers one record; said in docs/api.md
NO_LIMIT = 1 << 62
OUTPUT_KEY = "SageMakerOutput"
INPUT_KEY = "SageMakerInput"


class ModelRefused(Exception):
    """The model answered request `index` (0-based, in the order sent) with an error."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


class RecordError(Exception):
    """One record could not be transformed; `record` is its 1-based number in its object."""

    def __init__(self, record: int, message: str):
        super().__init__(f"record {record}: {message}")
        self.record = record


@dataclass(frozen=True)
class TransformPlan:
    split_type: str = "None"
    strategy: str = DEFAULT_STRATEGY
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB << 20
    content_type: str | None = None
    accept: str | None = None
    assemble_with: str = "None"
    join_source: str = "None"
    input_filter: tuple[Step, ...] = ()
    output_filter: tuple[Step, ...] = ()

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> "TransformPlan":
        """CreateTransformJob's fields; ValueError naming the field and what it takes."""
        given = request["TransformInput"]
        output = request["TransformOutput"]
        processing = request.get("DataProcessing") or {}
        split = given.get("SplitType") or "None"
        chosen = {
            "TransformInput.SplitType": (split, SPLIT_TYPES),
            "BatchStrategy": (request.get("BatchStrategy") or DEFAULT_STRATEGY, STRATEGIES),
            "TransformOutput.AssembleWith": (output.get("AssembleWith") or "None", ASSEMBLE),
            "DataProcessing.JoinSource": (processing.get("JoinSource") or "None",
                                          JOIN_SOURCES)}
        for field, (value, allowed) in chosen.items():
            if value not in allowed:
                raise ValueError(f"{field}: {value} is not supported here; give one of "
                                 f"{', '.join(allowed)}")
        filters = {}
        for field in ("InputFilter", "OutputFilter"):
            try:
                filters[field] = compile_path(processing.get(field) or "$")
            except PathError as exc:
                raise ValueError(f"DataProcessing.{field}: {exc}") from None
        payload_mb = request.get("MaxPayloadInMB")
        if payload_mb is None:
            payload_mb = DEFAULT_MAX_PAYLOAD_MB
        return cls(split_type=split, strategy=chosen["BatchStrategy"][0],
                   # 0: no limit (SageMaker streams such a payload)
                   max_payload_bytes=payload_mb << 20 if payload_mb else NO_LIMIT,
                   content_type=given.get("ContentType"), accept=output.get("Accept"),
                   assemble_with=chosen["TransformOutput.AssembleWith"][0],
                   join_source=chosen["DataProcessing.JoinSource"][0],
                   input_filter=filters["InputFilter"], output_filter=filters["OutputFilter"])

    @property
    def reads_records(self) -> bool:
        return bool(self.input_filter or self.output_filter or self.join_source == "Input")


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def split_records(data: bytes, split_type: str) -> list[bytes]:
    """The object's records: itself (`None`), or its non-empty lines (`Line`)."""
    if split_type == "None":
        return [data]
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def mini_batches(sizes: list[int], strategy: str, max_bytes: int) -> list[range]:
    """Which records go together in one request: one each (`SingleRecord`), or as many in a
    row as fit `max_bytes` with a newline between them (`MultiRecord`). A record larger than
    the limit alone is an error: SageMaker refuses it too."""
    batches: list[range] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise RecordError(i + 1, f"{size} bytes is more than MaxPayloadInMB allows "
                                     f"({max_bytes >> 20} MB); raise MaxPayloadInMB or split "
                                     f"the object into smaller records")
        joined = used + size + (1 if i > start else 0)
        if strategy == "SingleRecord" or (i > start and joined > max_bytes):
            if i > start:
                batches.append(range(start, i))
            start, used = i, size
        else:
            used = joined
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


def outputs_of(answer: bytes, batch: range) -> list[bytes]:
    """One output per record of the batch: the whole answer for one record, else its lines
    (a model given N lines answers N lines, as SageMaker requires of MultiRecord)."""
    if len(batch) == 1:
        return [answer]
    lines = [line.rstrip(b"\r") for line in answer.rstrip(b"\n").split(b"\n")]
    if len(lines) != len(batch):
        raise RecordError(batch.start + 1, f"the model answered {len(lines)} lines for the "
                                           f"{len(batch)} records sent together (records "
                                           f"{batch.start + 1}-{batch.stop}); with "
                                           f"MultiRecord it must answer one line per record")
    return lines


def read_record(data: bytes, content_type: str | None) -> Any:
    """A record as the filters see it: a CSV row's fields, a JSON value."""
    kind = _media(content_type)
    text = data.decode("utf-8")
    if kind in CSV_TYPES:
        rows = list(csv.reader(io.StringIO(text)))
        return rows[0] if len(rows) == 1 else rows
    if kind in JSON_TYPES or not kind:
        return json.loads(text)
    raise ValueError(f"a filter or join reads records as CSV or JSON; the content type is "
                     f"{content_type}")


def write_record(value: Any, as_csv: bool) -> bytes:
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if value and all(isinstance(row, list) for row in value):
            writer.writerows(value)
        else:
            writer.writerow(value if isinstance(value, list) else [value])
        return out.getvalue().rstrip("\n").encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _answer_value(output: bytes, accept: str | None) -> Any:
    """The model's answer to one record, read for a join or filter: CSV fields, JSON, or its
    text when it is neither."""
    try:
        return read_record(output, accept)
    except (ValueError, UnicodeDecodeError):
        return output.decode("utf-8", errors="replace")


def join_record(source: bytes, output: bytes, plan: TransformPlan) -> tuple[Any, bool]:
    """(the joined value, whether it is a CSV row)."""
    given = read_record(source, plan.content_type)
    answer = _answer_value(output, plan.accept)
    if _media(plan.content_type) in CSV_TYPES and _media(plan.accept) in CSV_TYPES:
        return [*given, *(answer if isinstance(answer, list) else [answer])], True
    if isinstance(given, dict):
        return {**given, OUTPUT_KEY: answer}, False
    return {INPUT_KEY: given, OUTPUT_KEY: answer}, False


def finish_record(source: bytes, output: bytes, plan: TransformPlan) -> bytes:
    """The output line of one record: joined with its input, and filtered, as asked."""
    if plan.join_source == "Input":
        value, as_csv = join_record(source, output, plan)
    elif plan.output_filter:
        value = _answer_value(output, plan.accept)
        as_csv = _media(plan.accept) in CSV_TYPES
    else:
        return output
    if plan.output_filter:
        value = select(value, plan.output_filter)
    return write_record(value, as_csv)


def filter_input(record: bytes, plan: TransformPlan) -> bytes:
    if not plan.input_filter:
        return record
    return write_record(select(read_record(record, plan.content_type), plan.input_filter),
                        _media(plan.content_type) in CSV_TYPES)


def assemble(outputs: Iterable[bytes], assemble_with: str) -> bytes:
    """The output object: the outputs one after another (`None`), or one a line (`Line`)."""
    if assemble_with == "Line":
        return b"".join(o.rstrip(b"\n") + b"\n" for o in outputs)
    return b"".join(outputs)


def transform_object(data: bytes, plan: TransformPlan,
                     invoke_all: Callable[[list[bytes]], list[bytes]]) -> tuple[bytes, int]:
    """(the object's output, its number of records). `invoke_all(payloads)` sends each
    request to the model (as many at once as the job allows) and returns the answers in
    order, or raises ModelRefused for a request the model answered with an error."""
    records = split_records(data, plan.split_type)
    inputs = [_per_record(i, filter_input, record, plan) for i, record in enumerate(records)]
    batches = mini_batches([len(r) for r in inputs], plan.strategy, plan.max_payload_bytes)
    try:
        answers = invoke_all([b"\n".join(inputs[i] for i in batch) for batch in batches])
    except ModelRefused as exc:
        batch = batches[exc.index]
        raise RecordError(batch.start + 1, f"{exc}") from None
    outputs = [out for batch, answer in zip(batches, answers)
               for out in outputs_of(answer, batch)]
    if plan.join_source == "Input" or plan.output_filter:
        outputs = [_per_record(i, lambda o, p, src=records[i]: finish_record(src, o, p), out,
                               plan) for i, out in enumerate(outputs)]
    return assemble(outputs, plan.assemble_with), len(records)


def _per_record(i: int, step: Callable[[bytes, TransformPlan], bytes], record: bytes,
                plan: TransformPlan) -> bytes:
    """`step` on record i; what goes wrong names the record."""
    try:
        return step(record, plan)
    except (PathError, ValueError, UnicodeDecodeError) as exc:
        raise RecordError(i + 1, f"{exc}") from None


def relative_key(prefix: str, key: str) -> str:
    """Where an input object sits under its S3 prefix, which its output keeps: the prefix
    `in/` or `in` (a folder) and `in/a/x.csv` give `a/x.csv`; a prefix that ends inside a
    name (`in/da` matching `in/data.csv`) keeps the name whole (`data.csv`)."""
    rest = key[len(prefix):]
    if not prefix or prefix.endswith("/") or rest.startswith("/"):
        return rest.lstrip("/")
    return key[prefix.rfind("/") + 1:]


def output_key(output_prefix: str, relative: str) -> str:
    """SageMaker's name for an object's output: its relative key plus `.out`, under the
    S3OutputPath's prefix."""
    base = output_prefix.rstrip("/")
    return f"{base}/{relative}.out" if base else f"{relative}.out"
