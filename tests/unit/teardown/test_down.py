"""``down``'s first decisions, made on the probe alone before anything is locked or deleted."""

from __future__ import annotations

import types

import pytest

from provisioner.core.errors import ConfigError
from provisioner.node.layout import NodePaths
from provisioner.node.remote import NodeStats, Result
from provisioner.teardown.down import down
from provisioner.teardown.options import DownOptions
from provisioner.teardown.service import service_for

EMPTY_SERVICE = "@@service\nloaded=0 running=0 pid=\n"


class ProbedNode:
    """A node that answers the probe with ``probe_output`` and must be asked nothing else."""

    def __init__(self, probe_output: str) -> None:
        self.probe_output = probe_output
        self.stats = NodeStats(connections=1)
        self.commands: list[str] = []

    def run(self, command: str, *, check: bool = True, stdin=None, timeout=None,
            on_output=None) -> Result:
        self.commands.append(command)
        assert len(self.commands) == 1, f"only the probe may run, not {command!r}"
        self.stats.commands += 1
        return Result(command, 0, self.probe_output, "", 0.0)


def tear_down(node: ProbedNode, workdir: str = "/home/u/provision", **options):
    paths = NodePaths(**{field: f"{workdir}/{field}" for field in NodePaths.model_fields})
    paths = paths.model_copy(update={"workdir": workdir})
    facts = types.SimpleNamespace(platform="linux", uid=1000, home="/home/u", usable_pythons=[])
    cfg = types.SimpleNamespace(name="n1", host="203.0.113.7")
    return down(node, cfg=cfg, config_path="node.yaml", facts=facts, paths=paths,
                service=service_for(facts, paths), token=None, options=DownOptions(**options))


@pytest.mark.parametrize("workdir_lines, why", [
    ("", "does not exist"),
    ("exists\nfiles\n", "provision did not make it"),
    ("exists\n", "nothing but empty folders"),
])
def test_a_node_up_never_touched_has_nothing_to_do(workdir_lines, why):
    node = ProbedNode(f"@@state\n\n@@workdir\n{workdir_lines}@@plist\n@@token\n{EMPTY_SERVICE}")
    report = tear_down(node)
    assert report.nothing_to_do and report.ok
    assert why in report.notes[0]
    assert report.cost == {"connections": 1, "commands": 1, "transfers": 0}


def test_wipe_all_refuses_a_work_folder_that_is_the_home_folder_before_touching_anything():
    node = ProbedNode(f"@@state\n{{}}\n@@workdir\nexists\nours\nfiles\n@@plist\n@@token\n"
                      f"{EMPTY_SERVICE}")
    with pytest.raises(ConfigError, match="--wipe all refuses to delete it"):
        tear_down(node, workdir="/home/u", wipe="all")
    assert len(node.commands) == 1
