# Runs ON THE NODE (stdlib only, Python 3.8+), sent over stdin by provision's `down`.
#
# 1. Removes exactly the paths provision listed (files, or whole trees), each checked again
#    here: inside the work folder (its real path, so a symlinked folder cannot lead outside)
#    or the one LaunchAgent plist. A symlink is removed, never followed.
# 2. Removes the folders those removals left empty (under the given prune roots).
# 3. Looks for the Hugging Face token in what remains, WITHOUT knowing it: provision sent
#    only its sha256, its length and its public prefix (e.g. "hf_"). Each candidate
#    substring of that length is hashed and compared.
# Prints one JSON document. The spec (PAYLOAD) is rendered in by provision.
import hashlib
import json
import os
import re
import shutil
import stat
import sys

SPEC = json.loads(PAYLOAD)  # noqa: F821 - PAYLOAD is prepended by provision
WORKDIR = os.path.normpath(SPEC["workdir"])
PLIST = SPEC.get("plist")


def real_workdir():
    return os.path.realpath(WORKDIR)


def allowed(path):
    path = os.path.normpath(path)
    if PLIST and path == os.path.normpath(PLIST):
        return True
    if path == WORKDIR:
        return True
    if not path.startswith(WORKDIR + "/"):
        return False
    # The folder holding it must really be inside the work folder (no symlinked escape).
    parent = os.path.realpath(os.path.dirname(path))
    root = real_workdir()
    return parent == root or parent.startswith(root + "/")


def size_of(path):
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def remove(item):
    path = item["path"]
    result = {"path": path, "existed": False, "bytes": 0, "error": None}
    if not allowed(path):
        result["error"] = "refused: outside the work folder"
        return result
    size = size_of(path)
    if size is None:
        return result
    result["existed"] = True
    result["bytes"] = size
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.remove(path)
        elif item.get("tree"):
            keep_last = item.get("keep_last")
            if keep_last:
                # Everything else first: an interrupted wipe still finds its marker and
                # can be finished by the next run.
                for name in sorted(os.listdir(path)):
                    full = os.path.join(path, name)
                    if full != keep_last:
                        remove_tree(full)
            remove_tree(path)
        else:
            os.rmdir(path)
    except OSError as error:
        result["error"] = error.strerror or str(error)
    return result


def remove_tree(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.remove(path)
    else:
        shutil.rmtree(path)


def prune(root):
    """Remove empty folders below root (not root itself), deepest first."""
    if not os.path.isdir(root) or os.path.islink(root) or not allowed(root):
        return
    for folder, dirs, files in os.walk(root, topdown=False):
        if folder != root and not os.listdir(folder):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def candidates(data, probe):
    """Yield offsets of substrings that could be the token."""
    length = probe["length"]
    prefix = probe.get("prefix", "").encode()
    if prefix:
        start = data.find(prefix)
        while start != -1:
            if start + length <= len(data):
                yield start
            start = data.find(prefix, start + 1)
        return
    # No public prefix: runs of exactly `length` characters of the token's alphabet.
    for match in re.finditer(rb"[A-Za-z0-9_\-]+", data):
        if match.end() - match.start() == length:
            yield match.start()


def scan_file(path, probe):
    length = probe["length"]
    wanted = probe["sha256"]
    overlap = length - 1
    tail = b""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 22)
            if not block:
                return False
            data = tail + block
            for start in candidates(data, probe):
                if hashlib.sha256(data[start:start + length]).hexdigest() == wanted:
                    return True
            tail = data[-overlap:] if overlap > 0 else b""


def scan(probe):
    report = {"files": 0, "bytes": 0, "found": [], "skipped": []}
    skip = [os.path.normpath(p) for p in probe.get("skip", [])]
    limit = probe["max_bytes"]
    roots = [p for p in probe["roots"] if os.path.lexists(p)]
    for root in roots:
        if os.path.islink(root):
            continue
        if os.path.isfile(root):
            walker = [(os.path.dirname(root), [], [os.path.basename(root)])]
        else:
            walker = os.walk(root)
        for folder, dirs, files in walker:
            dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(folder, d)) not in skip]
            for name in files:
                full = os.path.join(folder, name)
                try:
                    info = os.lstat(full)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > limit:
                    report["skipped"].append(full)
                    continue
                try:
                    hit = scan_file(full, probe)
                except OSError:
                    report["skipped"].append(full)
                    continue
                report["files"] += 1
                report["bytes"] += info.st_size
                if hit:
                    report["found"].append(full)
    return report


removed = [remove(item) for item in SPEC.get("remove", [])]
for folder in SPEC.get("prune", []):
    prune(folder)
result = {"removed": removed, "scan": scan(SPEC["scan"]) if SPEC.get("scan") else None}
sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
