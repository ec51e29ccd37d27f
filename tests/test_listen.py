"""The HTTP listener takes an address, never a host name, and only 127.0.0.0/8 and ::1
count as loopback.  A real daemon serves on IPv6 loopback."""

from __future__ import annotations

import urllib.request

import pytest

from tests.test_daemon import start_daemon  # noqa: F401 -- a fixture
from tests.test_runner import wait_for


@pytest.mark.parametrize(
    ("listen", "error"),
    [
        ("localhost:9464", "listen takes an IP address, not a host name"),
        ("127.evil.com:9464", "listen takes an IP address, not a host name"),
        ("127.0.0.1.nip.io:9464", "listen takes an IP address, not a host name"),
        ("127.1:9464", "listen takes an IP address, not a host name"),
        ("::1:9464", "listen must be address:port"),
        ("[127.0.0.1]:9464", "listen must be address:port"),
        ("127.0.0.1:65536", "listen must be address:port"),
        ("127.0.0.1:", "listen must be address:port"),
        ("127.0.0.1", "listen must be address:port"),
        ("0.0.0.0:9464", "is not a loopback address; set allow_remote: true"),
        ("[::]:9464", "is not a loopback address; set allow_remote: true"),
        ("192.168.1.10:9464", "is not a loopback address; set allow_remote: true"),
    ],
)
def test_a_listen_that_is_not_a_loopback_address_is_refused(toilbox, write_config, listen,
                                                            error):
    config = write_config(f"http: {{listen: '{listen}'}}\n")
    result = toilbox("-c", str(config), "validate")
    assert result.code == 3
    assert result.err.startswith(f"toilbox: error: {config}:3: http"), result.err
    assert error in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "127.8.9.10:0", "[::1]:9464",
                                    "[::ffff:127.0.0.1]:9464"])
def test_loopback_addresses_need_no_allow_remote(toilbox, write_config, listen):
    config = write_config(f"http: {{listen: '{listen}'}}\n")
    assert toilbox("-c", str(config), "validate").code == 0


def test_allow_remote_opens_any_address_but_still_no_name(toilbox, write_config):
    token = "token: 'a-token-of-sixteen-plus'"
    ok = write_config(f"http: {{listen: '0.0.0.0:9464', allow_remote: true, {token}}}\n")
    assert toilbox("-c", str(ok), "validate").code == 0
    bare = write_config("http: {listen: '0.0.0.0:9464', allow_remote: true}\n")
    refused = toilbox("-c", str(bare), "validate")
    assert refused.code == 3 and "allow_remote: true needs a token" in refused.err
    named = write_config(
        f"http: {{listen: 'metrics.example.com:9464', allow_remote: true, {token}}}\n"
    )
    assert "not a host name" in toilbox("-c", str(named), "validate").err


@pytest.mark.slow
def test_the_daemon_serves_on_ipv6_loopback(start_daemon, write_config):  # noqa: F811
    config = write_config("""
        http: {listen: "[::1]:0"}
        tasks:
          tick: {uses: check.faults, schedule: every 1h}
    """)
    daemon = start_daemon(config)
    wait_for(lambda: daemon.events("http.listening"), 15)
    address = daemon.events("http.listening")[0]["address"]
    assert address.startswith("[::1]:")
    with urllib.request.urlopen(f"http://{address}/healthz", timeout=10) as response:
        assert response.status == 200
    assert daemon.stop() == 0
