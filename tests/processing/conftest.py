import pytest

import net
from tests.processing.in_process import Downloads


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> Downloads:
    stub = Downloads()
    monkeypatch.setattr(net, "fetch_if_changed", stub)
    return stub
