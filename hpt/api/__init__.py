"""`hpt api`: SageMaker's API (tuning jobs, training jobs, models, endpoints) served by hpt,
so boto3 and the SageMaker Python SDK run unchanged against your own machines."""
