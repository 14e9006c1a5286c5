"""The AWS query-protocol calls a SageMaker client makes before its first SageMaker call:
STS `GetCallerIdentity` (the SDK asks who you are, to name a default bucket), IAM
`SimulatePrincipalPolicy` and `GetRole` (the SDK 3.x checks that the execution role may do
what a training job does and that SageMaker may assume it). A form-encoded request, an XML
answer (pure: form in, (status, XML) out).

hpt has no IAM and assumes no role: any well-formed role ARN works. So every action a role
is asked about is `allowed`, which is what hpt will then do, and a role exists, trusting
`sagemaker.amazonaws.com`, the service hpt stands in for. Any other action is refused as STS
and IAM refuse an unknown one."""

from __future__ import annotations

import json
from urllib.parse import quote
from xml.sax.saxutils import escape

from hpt.api.tuning import ACCOUNT

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"


def answer(form: dict[str, list[str]], request_id: str) -> tuple[int, str]:
    """(HTTP status, XML body) for a query-protocol request's parsed form."""
    action = form.get("Action", [""])[0]
    if action == "GetCallerIdentity":
        return 200, _wrapped(action, STS_NS, request_id, (
            f"<Arn>arn:aws:iam::{ACCOUNT}:user/hpt</Arn>"
            f"<UserId>AIDAHPTAPI000000000000</UserId><Account>{ACCOUNT}</Account>"))
    if action == "SimulatePrincipalPolicy":
        return 200, _wrapped(action, IAM_NS, request_id, _simulated(form))
    if action == "GetRole":
        return 200, _wrapped(action, IAM_NS, request_id, _role(form.get("RoleName", ["hpt"])[0]))
    namespace = IAM_NS if form.get("Version", [""])[0] == "2010-05-08" else STS_NS
    return 400, (f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
                 f'<Code>InvalidAction</Code><Message>hpt api answers STS GetCallerIdentity '
                 f'and IAM SimulatePrincipalPolicy and GetRole only, not '
                 f'{escape(action) or "(none)"}'
                 f'</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>')


def members(form: dict[str, list[str]], name: str) -> list[str]:
    """A query-protocol list (`Name.member.1`, `Name.member.2`, ...), in order."""
    found = []
    for key, values in form.items():
        prefix = f"{name}.member."
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            found.append((int(key[len(prefix):]), values[0]))
    return [value for _, value in sorted(found)]


def _simulated(form: dict[str, list[str]]) -> str:
    resources = members(form, "ResourceArns") or ["*"]
    results = "".join(
        f"<member><EvalActionName>{escape(action)}</EvalActionName>"
        f"<EvalResourceName>{escape(resource)}</EvalResourceName>"
        f"<EvalDecision>allowed</EvalDecision><MatchedStatements/><MissingContextValues/>"
        f"</member>" for action in members(form, "ActionNames") for resource in resources)
    return f"<IsTruncated>false</IsTruncated><EvaluationResults>{results}</EvaluationResults>"


def _wrapped(action: str, namespace: str, request_id: str, result: str) -> str:
    return (f'<{action}Response xmlns="{namespace}"><{action}Result>{result}</{action}Result>'
            f'<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>'
            f'</{action}Response>')


TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def _role(name: str) -> str:
    # IAM returns the trust policy URL-encoded
    trust = quote(json.dumps(TRUST, separators=(",", ":")))
    return (f"<Role><Path>/</Path><RoleName>{escape(name)}</RoleName>"
            f"<RoleId>AROAHPTAPI0000000000</RoleId>"
            f"<Arn>arn:aws:iam::{ACCOUNT}:role/{escape(name)}</Arn>"
            f"<CreateDate>2026-01-01T00:00:00Z</CreateDate>"
            f"<AssumeRolePolicyDocument>{trust}</AssumeRolePolicyDocument>"
            f"<MaxSessionDuration>3600</MaxSessionDuration></Role>")
