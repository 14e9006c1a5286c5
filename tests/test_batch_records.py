"""What a batch transform does to one object (hpt/serving/batch_records.py) and the JSONPath
its filters take (hpt/serving/jsonpath.py), against the examples SageMaker's documentation
gives: `$[1:]` drops a CSV row's ID column, `$.features` picks a JSON member, JoinSource
Input puts the answer beside the input, `$[0,-1]` keeps the ID and the prediction."""

import json

import pytest

from hpt.serving.batch_records import (ModelRefused, RecordError, TransformPlan, assemble,
                                       mini_batches, split_records, transform_object)
from hpt.serving.jsonpath import PathError, compile_path, select


@pytest.mark.parametrize("path, value, expected", [
    ("$", [1, 2], [1, 2]),
    ("$[1:]", ["id7", "0.5", "0.25"], ["0.5", "0.25"]),
    ("$[0,-1]", ["a", "b", "c"], ["a", "c"]),
    ("$[0,2:]", ["a", "b", "c", "d"], ["a", "c", "d"]),
    ("$[:2]", [1, 2, 3], [1, 2]),
    ("$[1]", [1, 2, 3], 2),
    ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),
    ("$.a.b[0]", {"a": {"b": [9, 8]}}, 9),
    ("$['id','SageMakerOutput']", {"id": 1, "x": 2, "SageMakerOutput": 3},
     {"id": 1, "SageMakerOutput": 3}),
    ("$[*]", {"a": 1, "b": 2}, [1, 2]),
    ("$.*", [3, 4], [3, 4]),
])
def test_the_json_paths_sagemaker_documents(path, value, expected):
    assert select(value, compile_path(path)) == expected


@pytest.mark.parametrize("path, value, says", [
    ("features", {}, "must start with $"),
    ("$.a[", {}, "cannot read"),
    ("$[x]", [], "neither names in quotes nor indexes"),
    ("$" + ".a" * 40, {}, "longer than 63"),
])
def test_a_malformed_path_says_what_is_wrong(path, value, says):
    with pytest.raises(PathError, match=says.replace("$", r"\$").replace("[", r"\[")):
        compile_path(path)


@pytest.mark.parametrize("path, value, says", [
    ("$.features", [1], "member 'features' asked of an array"),
    ("$[5]", [1, 2], "index 5 is outside the 2 elements"),
    ("$.b", {"a": 1}, "no member 'b'"),
])
def test_a_path_that_does_not_fit_the_record_says_why(path, value, says):
    with pytest.raises(PathError, match=says.replace("[", r"\[")):
        select(value, compile_path(path))


def test_records_and_mini_batches():
    assert split_records(b"a,1\r\nb,2\n\nc,3", "Line") == [b"a,1", b"b,2", b"c,3"]
    assert split_records(b"a\nb\n", "None") == [b"a\nb\n"]
    assert mini_batches([3, 3, 3], "SingleRecord", 100) == [range(0, 1), range(1, 2),
                                                            range(2, 3)]
    # 3 + 1 + 3 = 7 fits in 8; the third would make 11
    assert mini_batches([3, 3, 3, 3], "MultiRecord", 8) == [range(0, 2), range(2, 4)]
    with pytest.raises(RecordError, match="record 2: 9 bytes is more than MaxPayloadInMB"):
        mini_batches([3, 9], "MultiRecord", 8)
    assert assemble([b"x", b"y\n"], "Line") == b"x\ny\n"
    assert assemble([b"x", b"y"], "None") == b"xy"


def plan(**fields) -> TransformPlan:
    request = {"TransformInput": {"DataSource": {}, **fields.pop("given", {})},
               "TransformOutput": {"S3OutputPath": "s3://b/o", **fields.pop("output", {})},
               **fields}
    return TransformPlan.from_request(request)


def echo_sum(payloads):
    """A CSV model: each line of a request -> the sum of its fields, one line each."""
    return [b"\n".join(str(sum(float(v) for v in line.split(b","))).encode()
                       for line in p.split(b"\n")) for p in payloads]


def test_csv_with_an_input_filter_a_join_and_an_output_filter():
    data = b"id1,1,2\nid2,3,4\nid3,5,6\n"
    sent = []

    def model(payloads):
        sent.extend(payloads)
        return echo_sum(payloads)

    chosen = plan(given={"ContentType": "text/csv", "SplitType": "Line"},
                  output={"Accept": "text/csv", "AssembleWith": "Line"},
                  BatchStrategy="MultiRecord",
                  DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input",
                                  "OutputFilter": "$[0,-1]"})
    out, count = transform_object(data, chosen, model)
    assert count == 3 and sent == [b"1,2\n3,4\n5,6"]  # the ID dropped, one request
    assert out == b"id1,3.0\nid2,7.0\nid3,11.0\n"


def test_json_lines_joined_as_sagemaker_writes_them():
    data = b'{"id": 1, "features": [1, 2]}\n[5, 6]\n'
    chosen = plan(given={"ContentType": "application/jsonlines", "SplitType": "Line"},
                  output={"Accept": "application/json", "AssembleWith": "Line"},
                  DataProcessing={"InputFilter": "$", "JoinSource": "Input"})

    def model(payloads):
        return [json.dumps({"n": len(json.loads(p))}).encode() for p in payloads]

    out, _ = transform_object(data, chosen, model)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [{"id": 1, "features": [1, 2], "SageMakerOutput": {"n": 2}},
                     {"SageMakerInput": [5, 6], "SageMakerOutput": {"n": 2}}]


def test_bytes_pass_untouched_without_filters():
    blob = bytes(range(256)) * 3
    out, count = transform_object(blob, plan(), lambda payloads: [p[::-1] for p in payloads])
    assert (out, count) == (blob[::-1], 1)


def test_what_goes_wrong_names_the_record():
    chosen = plan(given={"ContentType": "application/json", "SplitType": "Line"},
                  DataProcessing={"InputFilter": "$.features"})
    with pytest.raises(RecordError, match=r"record 2: no member 'features'"):
        transform_object(b'{"features": [1]}\n{"x": 1}\n', chosen, lambda p: p)

    def refusing(payloads):
        raise ModelRefused(2, "the model answered 400: bad row")

    with pytest.raises(RecordError, match="record 3: the model answered 400: bad row"):
        transform_object(b"1\n2\n3\n", plan(given={"SplitType": "Line"}), refusing)
    short = plan(given={"SplitType": "Line"}, BatchStrategy="MultiRecord")
    with pytest.raises(RecordError, match="record 1: the model answered 1 lines for the 2"):
        transform_object(b"1\n2\n", short, lambda payloads: [b"one line"])


@pytest.mark.parametrize("fields, says", [
    ({"given": {"SplitType": "RecordIO"}}, "TransformInput.SplitType: RecordIO is not"),
    ({"BatchStrategy": "Many"}, "BatchStrategy: Many"),
    ({"DataProcessing": {"OutputFilter": "SageMakerOutput"}},
     "DataProcessing.OutputFilter: 'SageMakerOutput' must start with"),
])
def test_a_plan_refuses_what_it_cannot_do_naming_the_field(fields, says):
    with pytest.raises(ValueError, match=says):
        plan(**fields)


@pytest.mark.parametrize("prefix, key, relative", [
    ("in/", "in/a/x.csv", "a/x.csv"),
    ("in", "in/x.csv", "x.csv"),
    ("in/da", "in/data.csv", "data.csv"),
    ("", "x.csv", "x.csv"),
])
def test_an_output_keeps_its_inputs_place_under_the_prefix(prefix, key, relative):
    from hpt.serving.batch_records import output_key, relative_key

    assert relative_key(prefix, key) == relative
    assert output_key("out", relative) == f"out/{relative}.out"
    assert output_key("", relative) == f"{relative}.out"
