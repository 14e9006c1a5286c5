"""The query-protocol questions a SageMaker client asks before its first SageMaker call (STS
GetCallerIdentity, IAM SimulatePrincipalPolicy and GetRole: hpt/api/query_protocol.py),
answered in XML that botocore's own parser reads into the operations' output shapes."""

from urllib.parse import parse_qs, urlencode

import botocore.session
from botocore.parsers import create_parser

from hpt.api import query_protocol


def parsed(service: str, operation: str, form: dict) -> dict:
    status, xml = query_protocol.answer(parse_qs(urlencode(form)), "req-1")
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).output_shape
    out = create_parser("query").parse(
        {"status_code": status, "headers": {}, "body": xml.encode()}, shape)
    return out


def test_iam_answers_that_every_action_is_allowed_and_the_role_trusts_sagemaker():
    import json
    from urllib.parse import unquote

    out = parsed("iam", "SimulatePrincipalPolicy", {
        "Action": "SimulatePrincipalPolicy", "Version": "2010-05-08",
        "PolicySourceArn": "arn:aws:iam::000000000000:role/R",
        "ActionNames.member.1": "s3:PutObject", "ActionNames.member.2": "s3:GetObject",
        "ResourceArns.member.1": "arn:aws:s3:::b/*"})
    assert [(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"])
            for r in out["EvaluationResults"]] == [
        ("s3:PutObject", "arn:aws:s3:::b/*", "allowed"),
        ("s3:GetObject", "arn:aws:s3:::b/*", "allowed")]
    role = parsed("iam", "GetRole", {"Action": "GetRole", "Version": "2010-05-08",
                                     "RoleName": "SageMakerRole"})["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/SageMakerRole"
    trust = json.loads(unquote(role["AssumeRolePolicyDocument"]))
    assert trust["Statement"][0]["Principal"]["Service"] == "sagemaker.amazonaws.com"


def test_sts_says_who_and_an_unknown_action_is_refused_as_aws_refuses_it():
    out = parsed("sts", "GetCallerIdentity", {"Action": "GetCallerIdentity",
                                              "Version": "2011-06-15"})
    assert out["Account"] == "000000000000"
    refused = parsed("iam", "CreateRole", {"Action": "CreateRole", "Version": "2010-05-08"})
    assert refused["Error"]["Code"] == "InvalidAction"
    assert "not CreateRole" in refused["Error"]["Message"]
