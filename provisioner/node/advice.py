"""What the node's own settings mean for a rental, from its facts: pure.

FileVault and sleep are the provider's or the owner's settings, not ours to change (both need
the admin password); ``plan`` and ``status`` say what they cost and the command that fixes
them (FACTS.md "Real rented Macs").
"""

from __future__ import annotations

from .facts import NodeFacts


def node_warnings(facts: NodeFacts) -> list[str]:
    """Return one sentence per setting of the node that can cost the user the node."""
    warnings = []
    if facts.filevault:
        warnings.append(
            "FileVault is on: after a reboot (an update, a crash, the provider's maintenance) "
            "this Mac waits at the unlock screen and is unreachable over SSH until someone "
            "unlocks it on its screen (Screen Sharing or the provider's console); turn it off "
            "with `sudo fdesetup disable` if the rental allows")
    if facts.sleep_minutes:
        warnings.append(
            f"this Mac is set to sleep after {facts.sleep_minutes} min idle (pmset: sleep "
            f"{facts.sleep_minutes}): `up` and `session` keep it awake while they run, but "
            "between runs a sleeping Mac drops SSH and stops ComfyUI; keep it awake with "
            "`sudo pmset -a sleep 0` (and `sudo pmset -a disksleep 0`)")
    return warnings
