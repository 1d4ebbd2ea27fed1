"""Self-tests of the harness, with the plain OpenSSH client (and paramiko), never the tool."""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
import yaml

from tests.harness import fake_macos, sshd
from tests.harness.cli import cli_env, run_cli

GIB = 1024**3


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _server_key(node: sshd.SshNode) -> paramiko.PKey:
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            return transport.get_remote_server_key()
        finally:
            transport.close()


def test_macos_node_answers_like_a_mac(node_factory):
    node = node_factory()
    assert node.ssh("uname -s").stdout == "Darwin\n"
    assert node.ssh("sysctl -n hw.memsize").stdout == f"{64 * GIB}\n"
    assert node.ssh("sw_vers -productVersion").stdout == "15.5\n"
    assert node.ssh("uname -m").stdout == "arm64\n"


def test_macos_node_path_has_the_shims_first_then_debian_python(node_factory):
    node = node_factory()
    out = node.ssh("echo $PATH; command -v sysctl; command -v python3; python3 --version").stdout
    path, sysctl_path, python, version = out.splitlines()
    assert path == f"{node.shim_dir}:{sshd.NODE_PATH}"
    assert sysctl_path == f"{node.shim_dir}/sysctl"
    assert python == "/usr/bin/python3"
    assert re.fullmatch(r"Python 3\.1[0-2]\.\d+", version)
    # A script fed on stdin (how the tool runs its facts script) sees the same PATH.
    script = node.ssh("/bin/sh -s", input="uname -s\nsysctl -n hw.ncpu\n").stdout
    assert script == "Darwin\n14\n"


def test_two_nodes_with_different_memory_run_at_once(node_factory):
    small = node_factory(memory_gb=16, name="small")
    big = node_factory(memory_gb=64, name="big")
    assert small.port != big.port and small.user != big.user and small.home != big.home
    assert small.ssh("sysctl -n hw.memsize").stdout == f"{16 * GIB}\n"
    assert big.ssh("sysctl -n hw.memsize").stdout == f"{64 * GIB}\n"
    assert small.ssh("uname -n").stdout == "small\n"
    assert small.ssh("echo $HOME; id -un").stdout == f"{small.home}\n{small.user}\n"


def test_several_nodes_start_in_parallel(node_factory):
    with ThreadPoolExecutor(max_workers=6) as pool:
        nodes = list(pool.map(lambda i: node_factory(name=f"fleet{i}", memory_gb=8 * (i + 1)), range(6)))
    assert len({node.port for node in nodes}) == 6
    for i, node in enumerate(nodes):
        assert node.ssh("sysctl -n hw.memsize").stdout == f"{8 * (i + 1) * GIB}\n"


def test_linux_node_has_no_shims(node_factory):
    node = node_factory(platform="linux")
    assert node.shim_dir is None and node.fake_macos_values is None
    out = node.ssh("echo $PATH; uname -s; command -v sw_vers || echo none").stdout
    assert out.splitlines() == [sshd.NODE_PATH, "Linux", "none"]
    with pytest.raises(sshd.HarnessError):
        node.fake_macos_set(memory_gb=16)


def test_stop_refuses_the_port_and_start_brings_back_the_same_host_key(node_factory):
    node = node_factory()
    port, fingerprint = node.port, node.host_key_fingerprint
    node.stop()
    assert not node.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((node.host, node.port), timeout=5).close()
    assert node.ssh("true", check=False).returncode == 255
    node.start()
    assert node.port == port
    # StrictHostKeyChecking=yes against the known_hosts written at creation: same key.
    assert node.ssh("uname -s").stdout == "Darwin\n"
    assert _server_key(node).fingerprint == fingerprint


def test_stop_cuts_open_connections(node_factory):
    node = node_factory()
    client = subprocess.Popen(node.ssh_argv("sleep 30"), stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if node.connection_counts()["exec"] == 1:
                break
            time.sleep(0.02)
        node.stop()
        assert client.wait(timeout=10) == 255
    finally:
        client.kill()
        client.wait()


def test_connection_counts_one_ssh_call(node_factory):
    node = node_factory()
    before = node.connection_counts()
    node.ssh("true")
    after = node.connection_counts()
    delta = {key: after[key] - before[key] for key in after}
    assert delta == {
        "connections": 1, "auths": 1, "exec": 1, "shell": 0, "sftp": 0, "subsystem": 0,
        "sessions": 1, "forwards": 0,
    }


def test_connection_counts_sftp_and_forwards_on_one_connection(node_factory):
    node = node_factory()
    client = paramiko.SSHClient()
    client.load_host_keys(str(node.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        node.host, node.port, username=node.user, key_filename=str(node.client_key),
        look_for_keys=False, allow_agent=False,
    )
    try:
        for _ in range(3):
            _, stdout, _ = client.exec_command("true")
            stdout.channel.recv_exit_status()
        sftp = client.open_sftp()
        sftp.listdir(".")
        sftp.close()
        # A direct-tcpip channel (a tunnel) to some listening port; the node's own sshd will do.
        channel = client.get_transport().open_channel(
            "direct-tcpip", (node.host, node.port), ("127.0.0.1", 0)
        )
        assert channel.recv(4).startswith(b"SSH-")
        channel.close()
    finally:
        client.close()
    counts = node.connection_counts()
    assert counts["auths"] == 1 and counts["exec"] == 3 and counts["sftp"] == 1
    assert counts["forwards"] == 1
    assert counts["connections"] == 2  # the login, and the forward's connection to sshd


def test_host_fingerprint_matches_what_paramiko_sees(node_factory):
    node = node_factory()
    key = _server_key(node)
    assert node.host_key_fingerprint.startswith("SHA256:")
    assert key.fingerprint == node.host_key_fingerprint
    assert node.known_hosts_line == f"[127.0.0.1]:{node.port} {key.get_name()} {key.get_base64()}"


def test_write_node_yaml(node_factory, tmp_path):
    from provisioner.core.config import NodeConfig

    node = node_factory()
    path = node.write_node_yaml(tmp_path / "node.yaml", model="schnell", host_key=None)
    data = yaml.safe_load(path.read_text())
    assert data == {
        "name": node.name, "host": "127.0.0.1", "port": node.port, "user": node.user,
        "identity_file": str(node.client_key), "model": "schnell",
    }
    pinned = yaml.safe_load(node.write_node_yaml(tmp_path / "pinned.yaml").read_text())
    assert NodeConfig.model_validate(pinned).host_key == node.host_key_fingerprint


def test_fake_macos_values_change_at_runtime(node_factory):
    node = node_factory(memory_gb=64)
    assert node.ssh("sysctl -n kern.memorystatus_vm_pressure_level").stdout == "1\n"
    node.fake_macos_set(memory_gb=16, pressure_level=4, swap_used_mb=4710.4, wired_limit_mb=12288)
    out = node.ssh(
        "sysctl -n hw.memsize kern.memorystatus_vm_pressure_level iogpu.wired_limit_mb; "
        "sysctl vm.swapusage; memory_pressure | tail -n 1"
    ).stdout.splitlines()
    assert out == [
        str(16 * GIB), "4", "12288",
        "vm.swapusage: total = 5120.00M  used = 4710.40M  free = 409.60M  (encrypted)",
        "System-wide memory free percentage: 7%",
    ]
    node.fake_macos_set(pages_free=1234, swapouts=99)
    vm = node.ssh("vm_stat").stdout
    assert re.search(r"^Pages free: +1234\.$", vm, re.M)
    assert re.search(r"^Swapouts: +99\.$", vm, re.M)
    assert node.ssh("sysctl -n hw.memsize").stdout == f"{16 * GIB}\n"  # earlier values kept
    with pytest.raises(TypeError):
        node.fake_macos_set(memroy_gb=8)


def test_fake_macos_formats(node_factory):
    node = node_factory(chip="Apple M4 Max", macos_version="14.7")
    run = node.ssh
    assert run("sysctl -n hw.memsize machdep.cpu.brand_string hw.ncpu").stdout == (
        f"{64 * GIB}\nApple M4 Max\n16\n"
    )
    assert run("sysctl hw.memsize iogpu.wired_limit_mb").stdout == (
        f"hw.memsize: {64 * GIB}\niogpu.wired_limit_mb: 0\n"
    )
    assert run("sysctl -n vm.swapusage").stdout == (
        "total = 0.00M  used = 0.00M  free = 0.00M  (encrypted)\n"
    )
    unknown = run("sysctl -n hw.memsize no.such.oid hw.ncpu", check=False)
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        1, f"{64 * GIB}\n", "sysctl: unknown oid 'no.such.oid'\n"
    )
    denied = run("sysctl iogpu.wired_limit_mb=40000", check=False)
    assert (denied.returncode, denied.stderr) == (1, "sysctl: iogpu.wired_limit_mb: Operation not permitted\n")
    assert run("sw_vers").stdout == "ProductName:\t\tmacOS\nProductVersion:\t\t14.7\nBuildVersion:\t\t23H124\n"
    assert run("sw_vers -productName; sw_vers -buildVersion").stdout == "macOS\n23H124\n"
    assert run("uname -r; uname -sm; uname -ms; uname").stdout == (
        "23.7.0\nDarwin arm64\nDarwin arm64\nDarwin\n"
    )
    assert run("uname -a").stdout.startswith(f"Darwin {node.name} 23.7.0 Darwin Kernel Version 23.7.0: ")
    vm = run("vm_stat").stdout.splitlines()
    assert vm[0] == "Mach Virtual Memory Statistics: (page size of 16384 bytes)"
    labels = [line.split(":")[0] for line in vm[1:]]
    assert labels == [label for label, _ in fake_macos.VM_STAT_LABELS]
    assert all(re.fullmatch(r'[A-Za-z"\- ]+: +\d+\.', line) for line in vm[1:])
    pressure = run("memory_pressure").stdout
    assert pressure.startswith(f"The system has {64 * GIB} (4194304 pages with a page size of 16384).\n")
    assert pressure.endswith("System-wide memory free percentage: 62%\n")
    assert run("xcode-select -p").stdout == "/Library/Developer/CommandLineTools\n"
    assert run(f"command -v brew || {node.homebrew_bin}/brew --version").stdout == "Homebrew 4.5.8\n"


def test_darwin_release_and_build_mapping():
    assert fake_macos.darwin_release("15.5") == "24.5.0"
    assert fake_macos.darwin_release("26.0") == "25.0.0"
    assert fake_macos.darwin_release("14") == "23.0.0"
    assert fake_macos.build_version("15.5") == "24F74"
    assert fake_macos.build_version("15.9") == "24J100"


def test_node_user_can_clone_a_repo_owned_by_root(node_factory):
    node = node_factory()
    repo = node.node_dir / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
         "--allow-empty", "-m", "init"],
        check=True,
    )
    subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)
    assert node.ssh(f"git clone -q {repo} ~/clone && git -C ~/clone log --oneline | wc -l").stdout == "1\n"


def test_destroy_removes_the_user_and_its_processes(tmp_path):
    node = sshd.start_node(tmp_path, name="gone")
    user, home = node.user, node.home
    node.ssh("nohup sleep 300 </dev/null >/dev/null 2>&1 &")
    node.destroy()
    assert not node.running
    if sshd.is_root():
        assert not _user_exists(user)
        assert not home.exists()
        assert not [p for p in sshd._processes() if p.uid == node.uid and p.state != "Z"]
    node.destroy()  # idempotent


@pytest.mark.skipif(not sshd.is_root(), reason="throwaway users exist only when run as root")
def test_stale_users_of_a_dead_run_are_cleaned_up(tmp_path):
    node = sshd.start_node(tmp_path, name="stale")
    try:
        # Pretend the node belongs to a test run that was killed: its owner pid is gone.
        subprocess.run(
            ["usermod", "-c", f"{sshd.GECOS_MARKER} pid=999999999 start=1", node.user], check=True
        )
        master = node._proc
        assert node.user in sshd.cleanup_stale_nodes()
        assert not _user_exists(node.user)
        assert master.wait(timeout=10) is not None
        assert node.ssh("true", check=False).returncode == 255
    finally:
        node._user_exists = False  # already gone
        node.destroy()


def test_live_users_of_this_run_are_kept(node_factory):
    node = node_factory()
    assert node.user not in sshd.cleanup_stale_nodes()
    assert node.ssh("true").returncode == 0


def test_cli_env_isolates_the_laptop(laptop_home, monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env = cli_env(laptop_home, {"EXTRA": "1", "NO_COLOR": None})
    assert env["HOME"] == str(laptop_home)
    assert env["PROVISION_HOME"] == str(laptop_home / ".config" / "provision")
    assert "SSH_AUTH_SOCK" not in env and "HF_TOKEN" not in env and "NO_COLOR" not in env
    assert env["EXTRA"] == "1"
    assert (laptop_home / ".ssh").is_dir() and not any((laptop_home / ".ssh").iterdir())


def test_run_cli_runs_the_package(laptop_home):
    result = run_cli("--help", home=laptop_home)
    assert "No module named" not in result.stderr
    assert result.returncode == 0, result.stderr


def test_shared_tmp_is_readable_by_node_users(node_factory, shared_tmp):
    node = node_factory(platform="linux")
    (shared_tmp / "hello.txt").write_text("hi\n")
    os.chmod(shared_tmp / "hello.txt", 0o644)
    assert node.ssh(f"cat {shared_tmp}/hello.txt").stdout == "hi\n"


def test_a_missing_sshd_fails_the_run_and_never_skips():
    env = {**os.environ, "PROVISION_HARNESS_SSHD": "/nonexistent/sshd"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_darwin_release_and_build_mapping"],
        cwd=str(Path(__file__).resolve().parents[2]),
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "/nonexistent/sshd is missing" in result.stdout
    assert "1 error" in result.stdout and "skipped" not in result.stdout
