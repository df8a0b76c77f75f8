import pytest

from harness import Envoy, Mock


@pytest.fixture(scope="session")
def mock():
    m = Mock()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def envoy(mock):
    e = Envoy(mock)
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def clean_mock(request):
    """Every test starts with an empty call log and no scripts."""
    if "mock" in request.fixturenames or "envoy" in request.fixturenames:
        request.getfixturevalue("mock").reset()
    yield
