"""space.yaml <-> SageMaker `CreateHyperParameterTuningJob` request, as pure functions.

`to_request(spec)` (exporting.py) gives the request and a report: one line per thing
SageMaker cannot take as it is (a local path, an hpt-only strategy, a missing image or role),
each exported as an explicit REPLACE-ME placeholder or the nearest SageMaker setting. What
only hpt knows is also kept in the request's `Tags` (`hpt:<field>`), so `from_request`
(importing.py) restores the space exactly; a request written by hand or by SageMaker's SDK
imports too, with a report of what hpt had to assume.

Categorical values travel as strings; on import a list whose values all read as integers
becomes integers, else all numbers -> floats, all true/false -> booleans, else strings.
Static hyperparameters are JSON-encoded strings, as SageMaker's framework estimators send
them (the toolkit json.loads each back).
"""

from hpt.spacefile.sagemaker_json.exporting import to_request
from hpt.spacefile.sagemaker_json.importing import RequestError, from_request, request_problems

__all__ = ["RequestError", "from_request", "request_problems", "to_request"]
