"""`hpt api`: SageMaker's API (training jobs, tuning jobs, models, endpoints, batch transform)
served by hpt, so boto3 and the SageMaker Python SDK run unchanged against your own machines."""
