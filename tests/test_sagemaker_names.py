"""hpt/core/sagemaker_names.py holds SageMaker's rules once; here they are checked against their
sources: botocore's model of the SageMaker API and the sagemaker-training toolkit."""

import re

import boto3
import pytest
from sagemaker_training import params

from hpt.core import sagemaker_names as sm

MODEL = boto3.session.Session(region_name="us-east-1").client("sagemaker").meta.service_model


def shape(name):
    return MODEL.shape_for(name)


def test_the_reserved_keys_and_switches_are_the_toolkits():
    assert sm.RESERVED_HYPERPARAMETERS == params.SAGEMAKER_HYPERPARAMETERS
    assert sm.RESERVED_PREFIX == params.SAGEMAKER_PREFIX
    assert sm.MPI_ENABLED == params.MPI_ENABLED
    assert sm.MPI_PROCESSES_PER_HOST == params.MPI_PROCESSES_PER_HOST
    assert sm.PARAMETER_SERVER_ENABLED == params.PARAMETER_SERVER_ENABLED
    assert {params.MULTI_WORKER_MIRRORED_STRATEGY_ENABLED,
            params.PYTORCH_XLA_MULTI_WORKER_ENABLED} <= set(sm.DISTRIBUTION_SWITCHES)


def test_the_name_patterns_are_the_apis():
    tuning = shape("HyperParameterTuningJobName")
    assert tuning.metadata["max"] == sm.TUNING_JOB_NAME_MAX
    api = re.compile(f"^{tuning.metadata['pattern']}$")
    for name in ("digits-cnn", "a", "a--b", "A1", "-a", "a-", "a_b", "a.b", "x" * 32):
        assert bool(api.match(name)) == bool(sm.TUNING_JOB_NAME.match(name)), name
    env = shape("EnvironmentKey").metadata["pattern"]
    assert sm.ENV_NAME.pattern == f"^{env}$".replace("a-zA-Z", "A-Za-z")
    assert shape("ChannelName").metadata["max"] == sm.CHANNEL_NAME_MAX
    assert set(shape("S3DataDistribution").enum) == set(sm.DISTRIBUTION_TYPES)


@pytest.mark.parametrize("name", ["train", "test", "data.v1", "a_b-c", "X" * 64, "0"])
def test_every_channel_name_hpt_takes_is_one_sagemaker_takes(name):
    api = re.compile(f"^{shape('ChannelName').metadata['pattern']}$")
    assert sm.channel_name_problem(name) is None and api.match(name)


@pytest.mark.parametrize("name", ["..", ".hidden", "a..b", "-x", "", "x" * 65, "a/b", 3])
def test_a_channel_name_that_would_leave_its_folder_or_break_the_api_is_refused(name):
    assert sm.channel_name_problem(name)


@pytest.mark.parametrize("path, ok", [("train.py", True), ("src/train.py", True),
                                      ("./train.py", False), ("../x.py", False),
                                      ("/abs.py", False), ("-x.py", False), ("a/./b.py", False)])
def test_the_entry_point_rule(path, ok):
    assert (sm.entry_point_problem(path) is None) is ok


def test_a_mode_reads_back_from_its_switches():
    for mode in sm.DISTRIBUTION_MODES:
        assert sm.distribution_mode(sm.distribution_hyperparameters(mode, 2)) == mode
