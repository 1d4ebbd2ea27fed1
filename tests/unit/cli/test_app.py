"""The CLI's error handling: exit codes, the --json error document, verbatim messages.

The library is replaced by a stand-in that raises; the real click group runs in-process.
"""

from __future__ import annotations

import json
import signal

import click
import pytest
from click.testing import CliRunner

from provisioner import api
from provisioner.bench.plot import INSTALL_HINT
from provisioner.cli import cli
from provisioner.cli.app import JsonCommand, error_document
from provisioner.core.errors import (
    BenchFailed,
    ConfigError,
    ConnectError,
    SizingError,
    UsageError,
)
from provisioner.core.redact import MASK, register_secret
from tests.unit.bench.cases import sample_report

# (command line, the api function it calls); every command that takes --json.
JSON_COMMANDS = [
    (["plan", "n.yaml"], "plan"),
    (["up", "n.yaml", "--no-tunnel"], "up"),
    (["status", "n.yaml"], "status"),
    (["down", "n.yaml"], "down"),
    (["session", "n.yaml", "--for", "1h"], "session"),
    (["bench", "n.yaml"], "bench"),
    (["fleet", "plan", "f.yaml"], "fleet_plan"),
    (["fleet", "up", "f.yaml"], "fleet_up"),
    (["fleet", "status", "f.yaml"], "fleet_status"),
    (["fleet", "tunnel", "f.yaml"], "fleet_tunnel"),
    (["fleet", "down", "f.yaml"], "fleet_down"),
    (["fleet", "bench", "f.yaml"], "fleet_bench"),
    (["fleet", "session", "f.yaml", "--for", "1h"], "fleet_session"),
    (["run", "n.yaml"], "run_jobs"),
]


@pytest.fixture(autouse=True)
def keep_sigterm():
    """``session`` installs a SIGTERM handler; give the test process its own back."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="provision")


def refuse(monkeypatch, name: str, error: Exception) -> None:
    def stand_in(*args, **kwargs):
        raise error

    monkeypatch.setattr(api, name, stand_in)


def test_the_error_document_has_the_message_the_hint_and_the_exit_code():
    assert json.loads(error_document("no [plot] here", "", 2)) == {
        "ok": False, "error": "no [plot] here", "hint": None, "exit_code": 2}
    assert json.loads(error_document("boom", "do this", 3))["hint"] == "do this"


def test_the_error_document_redacts_secrets():
    secret = "hf_cliErrorDocSecret0123456789"
    register_secret(secret)
    text = error_document(f"the Hub refused {secret}", f"unset {secret}", 1)
    document = json.loads(text)
    assert secret not in text
    assert document["error"] == f"the Hub refused {MASK}" and document["hint"] == f"unset {MASK}"


@pytest.mark.parametrize("args,function", JSON_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_json_command_prints_one_error_document_on_a_refusal(monkeypatch, args, function):
    refuse(monkeypatch, function, ConfigError("n.yaml: tunnel.local_port: [bad] value", "fix [it]"))
    result = invoke(*args, "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"ok": False, "error": "n.yaml: tunnel.local_port: [bad] value",
                                         "hint": "fix [it]", "exit_code": 2}
    assert "error: n.yaml: tunnel.local_port: [bad] value" in result.stderr
    assert "hint: fix [it]" in result.stderr


def test_a_sizing_refusal_keeps_its_exit_code(monkeypatch):
    refuse(monkeypatch, "plan", SizingError("need 10.29 GB, this node has 5.73 GB", "use a 16 GB Mac"))
    result = invoke("plan", "n.yaml", "--memory", "8GB", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == document["exit_code"] == SizingError.exit_status
    assert document["ok"] is False and document["hint"] == "use a 16 GB Mac"


def test_without_json_a_refusal_goes_to_stderr_only(monkeypatch):
    refuse(monkeypatch, "status", ConnectError("cannot reach mac[1]:22", "is it up?"))
    result = invoke("status", "n.yaml")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == "error: cannot reach mac[1]:22\nhint: is it up?\n"


def test_a_bracketed_hint_is_printed_verbatim(monkeypatch):
    refuse(monkeypatch, "bench", UsageError("--plot needs matplotlib, which is not installed", INSTALL_HINT))
    result = invoke("bench", "n.yaml", "--plot", "out.png")
    assert result.exit_code == 2
    assert "hint: install the plot extra: pip install 'provision[plot]' (matplotlib)\n" in result.stderr


def test_an_error_is_printed_verbatim_markup_and_emoji_codes_included(monkeypatch):
    message = "/tmp/runs[bold]/x:smile:/node.yaml: unknown key [red]"
    refuse(monkeypatch, "plan", ConfigError(message, "see [link=x]docs[/link]"))
    result = invoke("plan", "n.yaml")
    assert result.stderr == f"error: {message}\nhint: see [link=x]docs[/link]\n"


def test_secrets_are_redacted_from_the_error_lines(monkeypatch):
    secret = "hf_cliErrorLineSecret0123456789"
    register_secret(secret)
    refuse(monkeypatch, "up", ConfigError(f"token {secret} refused", f"unset {secret}"))
    result = invoke("up", "n.yaml", "--json")
    assert secret not in result.stdout + result.stderr
    assert json.loads(result.stdout)["error"] == f"token {MASK} refused"


def test_a_report_printed_before_the_error_is_the_only_document(monkeypatch):
    report = sample_report(ok=False)
    refuse(monkeypatch, "bench", BenchFailed("run 2 failed", "use --fp32-vae", report=report))
    result = invoke("bench", "n.yaml", "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)  # one document: raises on a second one
    assert document["ok"] is False and len(document["runs"]) == 3 and "exit_code" not in document
    assert "error: run 2 failed" in result.stderr


@pytest.mark.parametrize("command,args,message", [
    ("plan", ["--json"], "Missing argument 'NODE_YAML'."),
    ("fleet up", ["f.yaml", "--parallel", "0", "--json"], "Invalid value for '--parallel'"),
    ("down", ["n.yaml", "--json", "--wipe", "everything"], "Invalid value for '--wipe'"),
])
def test_a_usage_error_with_json_prints_the_error_document(command, args, message):
    result = invoke(*command.split(), *args)
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["exit_code"] == 2
    assert document["error"].startswith(message)
    assert document["hint"] == f"Try 'provision {command} --help' for help."
    assert "Error: " + message in result.stderr, "click's own message stays on stderr"


def test_a_usage_error_without_json_prints_nothing_on_stdout():
    result = invoke("fleet", "up", "f.yaml", "--parallel", "0")
    assert result.exit_code == 2 and result.stdout == ""
    assert "Invalid value for '--parallel'" in result.stderr


def test_json_after_a_double_dash_is_an_argument_not_the_flag():
    result = invoke("plan", "--", "--json", "extra")
    assert result.exit_code == 2 and result.stdout == ""


def test_every_command_that_takes_json_is_a_json_command():
    def commands(group: click.Group):
        for command in group.commands.values():
            if isinstance(command, click.Group):
                yield from commands(command)
            else:
                yield command

    with_json = [c for c in commands(cli) if any(p.name == "as_json" for p in c.params)]
    assert len(with_json) == len(JSON_COMMANDS)
    assert all(isinstance(command, JsonCommand) for command in with_json)
