from __future__ import annotations

import pytest

from meshaccel_agent.http import parse_address


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    assert parse_address("[::1]:80") == ("::1", 80)


@pytest.mark.parametrize("bad", ["9464", "host:", "host:http"])
def test_bad_address(bad: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(bad)
