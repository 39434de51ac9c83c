"""Session fixtures: each registry server starts once per test run, on first use."""

import pytest

from .gcs import GcsServer
from .https import HttpsServer
from .mlflow import MlflowServer
from .oci import OciRegistry
from .s3 import S3Server

# The bearer token of the HTTPS server's /private/ tree: a credential the suite
# looks for afterwards in images, history and rendered files.
HTTPS_TOKEN = "suite-token-4f1d9c2e"


@pytest.fixture(scope="session")
def s3_server():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server():
    with GcsServer() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def https_server(tmp_path_factory):
    with HttpsServer(tmp_path_factory.mktemp("https"), HTTPS_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory):
    with OciRegistry(tmp_path_factory.mktemp("oci-registry")).running() as registry:
        yield registry
