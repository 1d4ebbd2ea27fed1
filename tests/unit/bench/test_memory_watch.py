"""The sampling loop is one shell command that prints delimited samples and ends with its stdin."""

from __future__ import annotations

import subprocess

from provisioner.bench.memory_watch import SAMPLE_END, watch_script
from provisioner.node.memory import parse_memory


def test_the_loop_prints_parsable_samples_until_its_stdin_closes():
    process = subprocess.Popen(["/bin/sh", "-c", watch_script("linux", interval=0.1)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    samples, lines = [], []
    while len(samples) < 3:
        line = process.stdout.readline()
        assert line, "the loop ended before three samples"
        if line.strip() == SAMPLE_END:
            samples.append(parse_memory("linux", "\n".join(lines)))
            lines = []
        else:
            lines.append(line.rstrip("\n"))
    assert all(sample.available_bytes > 0 for sample in samples)
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_the_macos_loop_reads_pressure_swap_and_vm_stat_in_one_go():
    script = watch_script("macos")
    for command in ("kern.memorystatus_vm_pressure_level", "vm.swapusage", "vm_stat",
                    f"echo {SAMPLE_END}", "sleep 1"):
        assert command in script
