"""Stopping ComfyUI's service and proving its port is free, against a fake node."""

from __future__ import annotations

from provisioner.teardown.probe import NodeProbe
from provisioner.teardown.service import port_free, stop


class Channel:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class PortNode:
    """A node whose 127.0.0.1 port accepts connections, or refuses them."""

    def __init__(self, listening: bool) -> None:
        self.listening = listening
        self.opened: list[Channel] = []

    def open_tcp(self, port: int, timeout: float = 10.0) -> Channel:
        if not self.listening:
            raise ConnectionRefusedError(port)
        self.opened.append(Channel())
        return self.opened[-1]

    def run(self, command: str, **kwargs):
        raise AssertionError(f"no command expected, got {command!r}")


def test_a_refused_connection_means_the_port_is_free():
    assert port_free(PortNode(listening=False), 8188)


def test_a_port_still_taken_after_the_wait_is_not_free_and_each_probe_is_closed():
    node = PortNode(listening=True)
    assert not port_free(node, 8188, wait=-1)
    assert node.opened and all(channel.closed for channel in node.opened)


def test_a_service_that_is_not_running_is_not_stopped_but_its_port_is_checked():
    report = stop(PortNode(listening=False), service=None, port=8188,
                  probe=NodeProbe(service={"loaded": False, "running": False}), dry_run=False,
                  note=lambda message: None)
    assert (report.stopped, report.port_free) == (False, True)


def test_a_dry_run_stops_nothing_and_checks_nothing():
    node = PortNode(listening=True)
    report = stop(node, service=None, port=8188,
                  probe=NodeProbe(service={"loaded": True, "running": True}), dry_run=True,
                  note=lambda message: None)
    assert report.was_running and not report.stopped and report.port_free is None
    assert node.opened == []
