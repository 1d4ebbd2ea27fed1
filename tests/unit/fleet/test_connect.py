"""Connecting a fleet: unknown host keys refused in one message, and tunnels held to the
nodes that came up. Connecting itself needs sshd: tests/e2e/test_fleet.py."""

from __future__ import annotations

from provisioner.core.errors import HostKeyError, UnknownHostKey, UsageError
from provisioner.fleet.connect import hold_tunnels, unknown_keys_error
from tests.unit.fleet.cases import report_of


def test_unknown_keys_are_refused_in_one_message_naming_every_node_and_the_flag():
    unknown = {name: UnknownHostKey("unknown host key", "", where=f"10.0.0.{i}:22", key_type="ssh-ed25519",
                                    fingerprint=f"SHA256:{name}print")
               for i, name in enumerate(["m1", "m2"], 1)}
    error = unknown_keys_error(unknown)
    assert isinstance(error, HostKeyError) and "\n" not in str(error)
    assert "2 nodes" in str(error)
    for name in ("m1", "m2"):
        assert f"{name} (10.0.0.{name[1]}:22) ssh-ed25519 SHA256:{name}print" in str(error)
    assert "--accept-new-host-key" in error.hint


def test_hold_tunnels_puts_urls_in_the_report_and_fails_a_node_whose_tunnel_cannot_open():
    class FakeTunnel:
        def __init__(self, name):
            self.url = f"http://127.0.0.1:{9000 + int(name[1])}"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            closed.append(self.url)

    def opener(name):
        if name == "n2":
            raise UsageError("local port 9002 is already in use on this machine", "free it")
        return FakeTunnel(name)

    closed: list[str] = []
    seen = {}
    report = hold_tunnels(report_of("f", {"n1": "ok", "n2": "ok"}), ["n1", "n2"], opener,
                          lambda rep, tunnels: seen.update(urls={n: t.url for n, t in tunnels.items()},
                                                           open=list(closed)))
    assert seen == {"urls": {"n1": "http://127.0.0.1:9001"}, "open": []}, "held while open"
    assert closed == ["http://127.0.0.1:9001"], "closed after the hold"
    lines = {line.node: line for line in report.nodes}
    assert lines["n1"].url == "http://127.0.0.1:9001" and lines["n1"].status == "ok"
    assert lines["n2"].status == "failed" and "tunnel: local port 9002" in lines["n2"].error
