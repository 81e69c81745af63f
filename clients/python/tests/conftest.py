import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sessiond_server import Server  # noqa: E402


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    from sessiond import Client

    with Client(server.url) as c:
        yield c
