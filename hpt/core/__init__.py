"""The vocabulary every layer shares: names (schema, SageMaker's reserved names), a
training job's status and record, objectives, the metric-line parser, errors and words."""
