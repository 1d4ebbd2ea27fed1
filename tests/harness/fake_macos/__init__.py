"""EMULATION of a macOS userland for tests: the values the PATH shims in ``bin/`` print.

No Mac exists on the test machine. A "macOS node" is a Linux user whose SSH sessions have
``bin/`` first on PATH, so ``sysctl``, ``sw_vers``, ``uname``, ``vm_stat``, ``memory_pressure``
and ``xcode-select`` answer in the real macOS formats (README.md lists the sources). This
module computes the values those shims print and writes them to a per-node ``values.env``
(shell ``KEY='value'`` lines) that every shim re-reads on every call, so a test can change
memory, pressure or swap while a node runs.

``launchctl`` and ``caffeinate`` (Python, /usr/bin/python3) emulate launchd's ``user/<uid>``
domain and caffeinate's process behaviour; ``fdesetup`` and ``pmset`` print FileVault's state
and the power settings; ``df`` prints a configured free space (``disk_free_kb``) or runs the
real /bin/df. They keep state in ``<fake_macos>/state/`` (owned by the node user:
``launchd/<label>.json`` per loaded service, ``calls.jsonl``, ``T/``) and read
``<fake_macos>/launchd.env`` (what a macOS Background session gives a job).

Provider profiles (what real providers install: Homebrew, MacPorts, the Command Line Tools)
are built by ``profiles.py`` beside this file.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from pathlib import Path
from typing import Any

SHIM_DIR = Path(__file__).resolve().parent / "bin"
SHIMS = ("sysctl", "sw_vers", "uname", "vm_stat", "memory_pressure", "xcode-select",
         "launchctl", "caffeinate", "df", "fdesetup", "pmset")
# The shims written in Python: their "#!/usr/bin/python3 -I" is rewritten by install(python=...)
# for a profiled node, whose /usr/bin/python3 is a stub.
PYTHON_SHIMS = ("launchctl", "caffeinate", "fdesetup", "pmset", "brew")
# brew is not on PATH in a non-interactive SSH session on a real Mac (FACTS.md): its stand-in
# is installed off PATH, in <node>/fake_macos/homebrew/bin/brew.
HOMEBREW_SHIM = "brew"
PAGE_SIZE = 16384
GIB = 1024**3

# chip -> (performance cores, efficiency cores, hw.model of a typical Mac with that chip)
_CHIPS: dict[str, tuple[int, int, str]] = {
    "Apple M1": (4, 4, "Macmini9,1"),
    "Apple M1 Pro": (8, 2, "MacBookPro18,1"),
    "Apple M1 Max": (8, 2, "Mac13,1"),
    "Apple M1 Ultra": (16, 4, "Mac13,2"),
    "Apple M2": (4, 4, "Mac14,3"),
    "Apple M2 Pro": (8, 4, "Mac14,12"),
    "Apple M2 Max": (8, 4, "Mac14,13"),
    "Apple M2 Ultra": (16, 8, "Mac14,14"),
    "Apple M3": (4, 4, "Mac15,3"),
    "Apple M3 Pro": (6, 6, "Mac15,6"),
    "Apple M3 Max": (12, 4, "Mac15,9"),
    "Apple M3 Ultra": (24, 8, "Mac15,14"),
    "Apple M4": (4, 6, "Mac16,10"),
    "Apple M4 Pro": (10, 4, "Mac16,11"),
    "Apple M4 Max": (12, 4, "Mac16,9"),
}
# Real build numbers of a few releases; others get a plausible synthetic one.
_BUILDS = {
    "14.7": "23H124", "15.0": "24A335", "15.1": "24B83", "15.2": "24C101", "15.3": "24D60",
    "15.4": "24E248", "15.5": "24F74", "15.6": "24G84", "26.0": "25A354",
}
# Typical share of memory that memory_pressure reports free, per pressure level.
_FREE_PERCENT = {1: 62, 2: 25, 4: 7}
_COMPRESSOR_SHARE = {1: 0.0, 2: 0.08, 4: 0.20}

# vm_stat labels in the order macOS prints them, and the key each one has in values.env.
VM_STAT_LABELS = (
    ("Pages free", "pages_free"),
    ("Pages active", "pages_active"),
    ("Pages inactive", "pages_inactive"),
    ("Pages speculative", "pages_speculative"),
    ("Pages throttled", "pages_throttled"),
    ("Pages wired down", "pages_wired_down"),
    ("Pages purgeable", "pages_purgeable"),
    ('"Translation faults"', "translation_faults"),
    ("Pages copy-on-write", "pages_copy_on_write"),
    ("Pages zero filled", "pages_zero_filled"),
    ("Pages reactivated", "pages_reactivated"),
    ("Pages purged", "pages_purged"),
    ("File-backed pages", "file_backed_pages"),
    ("Anonymous pages", "anonymous_pages"),
    ("Pages stored in compressor", "pages_stored_in_compressor"),
    ("Pages occupied by compressor", "pages_occupied_by_compressor"),
    ("Decompressions", "decompressions"),
    ("Compressions", "compressions"),
    ("Pageins", "pageins"),
    ("Pageouts", "pageouts"),
    ("Swapins", "swapins"),
    ("Swapouts", "swapouts"),
)
VM_STAT_KEYS = tuple(key for _, key in VM_STAT_LABELS)

# Inputs a test may set (start_node(..., fake_macos={...}) or SshNode.fake_macos_set(...)).
INPUTS = (
    "memory_gb", "memsize", "chip", "ncpu", "macos_version", "build_version", "hostname",
    "wired_limit_mb", "pressure_level", "free_percent", "swap_total_mb", "swap_used_mb",
    "swap_encrypted", "xcode_clt", "brew_version", *VM_STAT_KEYS,
    # df shim: unset = the real /bin/df; total defaults to free + 200 GiB.
    "disk_free_kb", "disk_total_kb",
    # launchctl shim: caps on launchd's 10 s ThrottleInterval and 20 s ExitTimeOut, and how
    # long a booted-out label stays loaded after bootout returned (0 = gone at once).
    "launchd_throttle_seconds", "launchd_exit_timeout_seconds", "launchd_bootout_linger_seconds",
    # sysctl kern.boottime: when the emulated Mac booted (epoch seconds, may be fractional);
    # SshNode sets it when the node starts and moves it to now on SshNode.reboot().
    "boot_time",
    # fdesetup status: "FileVault is On." when true (default false: "FileVault is Off.").
    "filevault",
    # pmset -g: the "sleep" line, minutes of idle before the Mac sleeps (default 0 = never).
    "sleep_minutes",
    # launchctl: true arms a one-shot switch: the next `bootstrap` fails with
    # "Bootstrap failed: 5: Input/output error" (exit 5), then the switch is off again. It is
    # kept as a file in the state folder (state/launchd/bootstrap_eio_once), not in values.env,
    # and is not remembered as an input: setting it true again arms it again; false disarms.
    "launchd_bootstrap_eio_once",
)
# Inputs that act once when written (see write_values) rather than being remembered.
ONE_SHOT_INPUTS = ("launchd_bootstrap_eio_once",)
EIO_ONCE_FILE = Path("state") / "launchd" / "bootstrap_eio_once"
# kern.boottime of a values.env written without boot_time (2024-12-07 05:40:00 UTC).
DEFAULT_BOOT_TIME = 1733550000.123456
# What a job bootstrapped into user/<uid> gets from the macOS Background session, beyond its
# plist's EnvironmentVariables (launchd.env; SshNode.launchd_env_set changes it).
LAUNCHD_ENV_DEFAULT = {"FAKE_MACOS_MPS": "1"}


def darwin_release(macos_version: str) -> str:
    """Return the Darwin kernel release ``uname -r`` prints for a macOS version (15.5 -> 24.5.0)."""
    parts = [int(p) for p in macos_version.split(".")[:2]] + [0]
    major, minor = parts[0], parts[1]
    if major == 10:
        return f"{minor + 4}.0.0"
    if major >= 26:  # macOS 26 (2025) runs Darwin 25
        return f"{major - 1}.{minor}.0"
    return f"{major + 9}.{minor}.0"


def build_version(macos_version: str) -> str:
    """Return the ``sw_vers -buildVersion`` of a macOS version (real where known)."""
    key = ".".join(macos_version.split(".")[:2])
    if "." not in key:
        key += ".0"
    if key in _BUILDS:
        return _BUILDS[key]
    darwin_major, minor = darwin_release(key).split(".")[:2]
    return f"{darwin_major}{chr(ord('A') + int(minor) % 26)}100"


def kern_boottime(boot_time: float) -> str:
    """Return ``sysctl -n kern.boottime`` for a boot at ``boot_time`` (epoch seconds):
    ``{ sec = 1733550000, usec = 123456 } Sat Dec  7 05:40:00 2024`` (ctime, local time)."""
    sec = int(boot_time)
    usec = min(999999, round((boot_time - sec) * 1_000_000))
    return f"{{ sec = {sec}, usec = {usec} }} {time.ctime(sec)}"


def _mb(value: float) -> str:
    return f"{value:.2f}M"


def compute(inputs: dict[str, Any]) -> dict[str, str]:
    """Return every values.env entry (UPPER_CASE keys) derived from ``inputs``.

    Unset inputs are derived: ``memsize`` from ``memory_gb``; the vm_stat counters from
    memsize, ``free_percent`` and ``pressure_level`` (1 green, 2 yellow, 4 red); swap counters
    from ``swap_used_mb``. An input set explicitly always wins over the derived value.
    """
    unknown = set(inputs) - set(INPUTS)
    if unknown:
        raise TypeError(f"unknown fake_macos value(s) {sorted(unknown)}; known: {', '.join(INPUTS)}")
    get = inputs.get
    memsize = int(get("memsize") or round(float(get("memory_gb", 64)) * GIB))
    chip = str(get("chip", "Apple M4 Pro"))
    perf, eff, model = _CHIPS.get(chip, (8, 4, "Mac16,11"))
    ncpu = int(get("ncpu") or perf + eff)
    if get("ncpu") and chip not in _CHIPS:
        perf, eff = ncpu, 0
    version = str(get("macos_version", "15.5"))
    pressure = int(get("pressure_level", 1))
    if pressure not in _FREE_PERCENT:
        raise ValueError("pressure_level must be 1 (normal), 2 (warn) or 4 (critical)")
    free_percent = int(get("free_percent", _FREE_PERCENT[pressure]))
    swap_used = float(get("swap_used_mb", 0.0))
    swap_total = get("swap_total_mb")
    if swap_total is None:  # macOS grows swap in 1 GiB files, none until needed
        swap_total = 0.0 if swap_used <= 0 else max(1024.0, math.ceil((swap_used + 1) / 1024) * 1024.0)
    swap_total = float(swap_total)

    total_pages = memsize // PAGE_SIZE
    free_share = free_percent / 100
    pages = {
        "pages_free": int(total_pages * free_share * 0.50),
        "pages_inactive": int(total_pages * free_share * 0.44),
        "pages_speculative": int(total_pages * free_share * 0.06),
        "pages_throttled": 0,
        "pages_wired_down": int(total_pages * 0.13),
        "pages_purgeable": int(total_pages * 0.002),
        "pages_occupied_by_compressor": int(total_pages * _COMPRESSOR_SHARE[pressure]),
    }
    pages["pages_active"] = max(
        0,
        total_pages - pages["pages_free"] - pages["pages_inactive"] - pages["pages_speculative"]
        - pages["pages_wired_down"] - pages["pages_occupied_by_compressor"],
    )
    swapped_pages = int(swap_used * 1024 * 1024 / PAGE_SIZE)
    pages.update(
        translation_faults=48_712_353,
        pages_copy_on_write=1_841_701,
        pages_zero_filled=21_474_193,
        pages_reactivated=190_831,
        pages_purged=105_461,
        file_backed_pages=pages["pages_inactive"] // 2 + pages["pages_active"] // 4,
        anonymous_pages=pages["pages_active"] - pages["pages_active"] // 4,
        pages_stored_in_compressor=int(pages["pages_occupied_by_compressor"] * 2.6),
        decompressions=int(pages["pages_occupied_by_compressor"] * 1.5),
        compressions=int(pages["pages_occupied_by_compressor"] * 3.1),
        pageins=1_043_421,
        pageouts=5_121 + swapped_pages,
        swapins=int(swapped_pages * 0.8),
        swapouts=swapped_pages,
    )
    for key in VM_STAT_KEYS:
        if get(key) is not None:
            pages[key] = int(get(key))

    values: dict[str, Any] = {
        "HW_MEMSIZE": memsize,
        "HW_PAGES": total_pages,
        "HW_NCPU": ncpu,
        "HW_PERFLEVEL0_PHYSICALCPU": perf,
        "HW_PERFLEVEL1_PHYSICALCPU": eff,
        "HW_MODEL": model,
        "HW_PAGESIZE": PAGE_SIZE,
        "CPU_BRAND": chip,
        "IOGPU_WIRED_LIMIT_MB": int(get("wired_limit_mb", 0)),
        "PRESSURE_LEVEL": pressure,
        "FREE_PERCENT": free_percent,
        "SWAP_TOTAL": _mb(swap_total),
        "SWAP_USED": _mb(swap_used),
        "SWAP_FREE": _mb(max(0.0, swap_total - swap_used)),
        "SWAP_ENCRYPTED": "(encrypted)" if get("swap_encrypted", True) else "",
        "OS_NAME": "macOS",
        "OS_VERSION": version,
        "OS_BUILD": str(get("build_version") or build_version(version)),
        "DARWIN_RELEASE": darwin_release(version),
        "KERN_HOSTNAME": str(get("hostname", "node1")),
        "XCODE_CLT": str(get("xcode_clt", "/Library/Developer/CommandLineTools")),
        "BREW_VERSION": str(get("brew_version", "4.5.8")),
        "DISK_FREE_KB": "" if get("disk_free_kb") is None else int(get("disk_free_kb")),
        "DISK_TOTAL_KB": "",
        "LAUNCHD_THROTTLE_SECONDS": float(get("launchd_throttle_seconds", 1)),
        "LAUNCHD_EXIT_TIMEOUT_SECONDS": float(get("launchd_exit_timeout_seconds", 2)),
        "LAUNCHD_BOOTOUT_LINGER_SECONDS": float(get("launchd_bootout_linger_seconds", 0)),
        "KERN_BOOTTIME": kern_boottime(float(get("boot_time") or DEFAULT_BOOT_TIME)),
        "FILEVAULT": "On" if get("filevault") else "Off",
        "PMSET_SLEEP": int(get("sleep_minutes") or 0),
    }
    if int(values["PMSET_SLEEP"]) < 0:
        raise ValueError("sleep_minutes must be >= 0 (0 = never)")
    if get("disk_free_kb") is not None:
        free_kb = int(get("disk_free_kb"))
        total_kb = int(get("disk_total_kb") or free_kb + 200 * 1024 * 1024)
        if free_kb < 0 or total_kb < free_kb:
            raise ValueError("disk_free_kb must be >= 0 and disk_total_kb >= disk_free_kb")
        values["DISK_TOTAL_KB"] = total_kb
    values["DARWIN_VERSION"] = (
        f"Darwin Kernel Version {values['DARWIN_RELEASE']}: Tue Apr 22 19:54:43 PDT 2025; "
        "root:xnu-11417.121.6~2/RELEASE_ARM64_T6041"
    )
    values.update({f"VM_{key.upper()}": value for key, value in pages.items()})
    return {key: str(value) for key, value in values.items()}


def write_values(path: Path, inputs: dict[str, Any]) -> dict[str, str]:
    """Write values.env for ``inputs`` atomically (shims never read half a file); return it.

    One-shot inputs (``ONE_SHOT_INPUTS``) act here and are REMOVED from ``inputs`` (the dict
    is changed in place, so SshNode.fake_macos_set does not remember them):
    ``launchd_bootstrap_eio_once`` true creates ``state/launchd/bootstrap_eio_once`` (the
    launchctl shim deletes it when it fails a bootstrap), false deletes it.
    """
    values = compute(inputs)
    for key in ONE_SHOT_INPUTS:
        if key in inputs:
            arm = path.parent / EIO_ONCE_FILE
            if inputs.pop(key):
                arm.parent.mkdir(parents=True, exist_ok=True)
                arm.write_text("armed by the test harness: the next bootstrap fails with error 5\n")
                os.chmod(arm, 0o644)
            else:
                arm.unlink(missing_ok=True)
    text = "# fake_macos values (EMULATION); written by tests/harness/fake_macos\n" + "".join(
        f"{key}={shlex.quote(value)}\n" for key, value in values.items()
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return values


def write_launchd_env(path: Path, env: dict[str, str]) -> dict[str, str]:
    """Write launchd.env (plain ``KEY=VALUE`` lines) atomically; return what was written."""
    for key, value in env.items():
        if not key or "=" in key or "\n" in key or "\n" in str(value):
            raise ValueError(f"launchd.env entry {key!r}: no '=' in names, no newlines")
    text = "# what a macOS Background session gives a LaunchAgent (fake_macos EMULATION)\n" + "".join(
        f"{key}={value}\n" for key, value in env.items()
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return dict(env)


def read_launchd_env(path: Path) -> dict[str, str]:
    """Read launchd.env back (the launchctl shim reads it the same way)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value
    return env


def read_calls(dest: Path, tool: str | tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Return the calls the shims and stubs logged under ``dest`` (oldest first): launchctl,
    caffeinate, brew, fdesetup, pmset, and in profiles port, clt-stub, python-stub. ``tool``
    keeps only that tool (or those tools)."""
    path = dest / "state" / "calls.jsonl"
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    tools = (tool,) if isinstance(tool, str) else tool
    return [call for call in calls if tools is None or call.get("tool") in tools]


def install(
    dest: Path,
    inputs: dict[str, Any],
    *,
    owner: tuple[int, int] | None = None,
    launchd_env: dict[str, str] | None = None,
    python: str | None = None,
) -> tuple[Path, Path]:
    """Copy the shims into ``dest``/bin (+ homebrew/bin/brew), write values.env and
    launchd.env, create ``dest/state`` (chowned to ``owner`` = (uid, gid): the node user
    writes the launchctl state and the calls log there); return the two bin dirs.

    ``python``: the interpreter the Python shims run on instead of /usr/bin/python3 (a
    profiled node, whose /usr/bin/python3 is a stub; see profiles.py)."""
    bin_dir = dest / "bin"
    brew_dir = dest / "homebrew" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    brew_dir.mkdir(parents=True, exist_ok=True)
    for name in SHIMS:
        install_script(SHIM_DIR / name, bin_dir / name, python=python)
    install_script(SHIM_DIR / HOMEBREW_SHIM, brew_dir / HOMEBREW_SHIM, python=python)
    for folder in (dest, bin_dir, brew_dir.parent, brew_dir):
        os.chmod(folder, 0o755)
    state = dest / "state"
    for folder in (state, state / "launchd"):
        folder.mkdir(mode=0o755, exist_ok=True)
        os.chmod(folder, 0o755)
        if owner is not None:
            os.chown(folder, *owner)
    write_values(dest / "values.env", inputs)
    write_launchd_env(dest / "launchd.env", {**LAUNCHD_ENV_DEFAULT, **(launchd_env or {})})
    return bin_dir, brew_dir


def install_script(
    source: Path, target: Path, *, python: str | None = None, tokens: dict[str, str] | None = None
) -> None:
    """Copy one shim/stub (mode 0755). ``python`` replaces a ``#!/usr/bin/python3 -I`` first
    line's interpreter; ``tokens`` replace ``@NAME@`` placeholders (profiles.py)."""
    text = source.read_text(encoding="utf-8")
    if python is not None and text.startswith("#!/usr/bin/python3 "):
        text = f"#!{python} " + text[len("#!/usr/bin/python3 "):]
    for name, value in (tokens or {}).items():
        text = text.replace(f"@{name}@", value)
    target.write_text(text, encoding="utf-8")
    os.chmod(target, 0o755)
