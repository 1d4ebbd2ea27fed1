"""Why `status` says ComfyUI is not running: a pure decision over state.json, the node's boot
time and what the supervisor reports (issue 14: a reboot after `up`)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from provisioner.api.service import StatusReport, why_not_running

AT = int(datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc).timestamp())
UP = {"last_up": {"status": "ok", "steps_done": ["comfyui", "health", "launch"],
                  "at": "2026-12-07T04:00:00+00:00", "booted_at": AT - 86400}}
NO_LAUNCH = {"last_up": {"status": "ok", "steps_done": ["comfyui"], "at": "2026-12-07T04:00:00+00:00",
                         "booted_at": AT - 86400}}
DOWN = {"loaded": False, "running": False}
REBOOTED = AT + 3600
SAME_BOOT = AT - 86400

# (platform, state.json, boot time now, supervisor) -> reason
CASES = [
    ("macos", UP, SAME_BOOT, {"loaded": True, "running": True, "pid": 7}, None),
    ("macos", UP, REBOOTED, {"loaded": True, "running": True, "pid": 7}, None),  # someone logged in
    ("macos", {}, REBOOTED, DOWN, None),  # up never ran: the installed row says so
    ("macos", NO_LAUNCH, REBOOTED, DOWN, "not_launched"),
    ("macos", UP, REBOOTED, DOWN, "rebooted"),
    ("linux", UP, REBOOTED, DOWN, "rebooted"),
    ("macos", UP, SAME_BOOT, DOWN, "stopped"),  # booted out, or its processes were killed
    ("macos", UP, SAME_BOOT, {"loaded": True, "running": False}, "stopped"),  # KeepAlive throttle
    ("linux", UP, SAME_BOOT, DOWN, "stopped"),
    ("macos", UP, None, DOWN, "stopped"),  # the boot time could not be read
]


@pytest.mark.parametrize("platform, state, booted_at, service, reason", CASES)
def test_the_reason_follows_the_record_the_boot_time_and_the_supervisor(platform, state, booted_at,
                                                                         service, reason):
    found, explanation = why_not_running(platform, state, booted_at, **service)
    assert found == reason
    assert (explanation is None) == (reason is None)


def test_a_reboot_on_a_mac_names_both_times_the_login_session_and_the_commands():
    _, explanation = why_not_running("macos", UP, REBOOTED, uid=501, **DOWN)
    assert explanation == (
        "the node rebooted at 2026-12-07 05:00:00 UTC (after the last up at 2026-12-07 04:00:00 "
        "UTC); a LaunchAgent in the user domain (user/501) is started again only by a login "
        "session: run `provision up NODE.yaml` or `provision restart NODE.yaml`")


def test_a_reboot_on_linux_says_the_supervisor_does_not_survive_it():
    _, explanation = why_not_running("linux", UP, REBOOTED, **DOWN)
    assert "the supervisor `up` started is a plain process, which a reboot ends" in explanation
    assert "login session" not in explanation


def test_an_old_record_without_the_up_time_still_tells_a_reboot_by_the_boot_time():
    state = {"last_up": {"steps_done": ["launch"], "booted_at": SAME_BOOT}}
    reason, explanation = why_not_running("macos", state, REBOOTED, **DOWN)
    assert reason == "rebooted" and "(after the last up" not in explanation


@pytest.mark.parametrize("platform, service, says", [
    ("macos", DOWN, "not loaded in launchd"),
    ("macos", {"loaded": True, "running": False}, "launchd has it loaded"),
    ("linux", DOWN, "its supervisor is not running"),
    ("linux", {"loaded": True, "running": False}, "its supervisor runs but ComfyUI does not"),
])
def test_a_stopped_service_says_what_the_supervisor_knows(platform, service, says):
    _, explanation = why_not_running(platform, UP, SAME_BOOT, **service)
    assert says in explanation and "provision restart NODE.yaml" in explanation


def test_the_json_report_carries_the_reason_and_the_boot_time():
    reason, explanation = why_not_running("macos", UP, REBOOTED, **DOWN)
    report = StatusReport.model_validate({
        "node": "m4", "host": "h", "installed": True, "remote_port": 8188,
        "booted_at": datetime.fromtimestamp(REBOOTED, timezone.utc), "last_up": UP["last_up"],
        "service": dict(DOWN, reason=reason, explanation=explanation),
        "health": {"answering": False, "problem": "nothing answers"}})
    data = report.model_dump(mode="json")
    assert data["service"]["reason"] == "rebooted"
    assert data["booted_at"].startswith("2026-12-07T05:00:00")
