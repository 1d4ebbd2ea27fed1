# Runs ON THE NODE (stdlib only, Python 3.8+), sent over stdin by provision's `down`.
#
# Read-only. Lists what a teardown works on, in one round trip, as JSON lines:
#   {"kind": "file", "label", "path", "bytes", "mtime_ns", "sha256"}  a file to harvest
#   {"kind": "problem", "label", "path", "error"}                       one that cannot be
#   {"kind": "model", "path", "bytes"}            a model file provision downloaded
#   {"kind": "size", "path", "bytes", "files"}    a folder's total
#   {"kind": "done"}                              the listing is complete
# The spec (PAYLOAD, rendered in by provision) names the folders; nothing here is a secret.
import hashlib
import json
import os
import stat
import sys

SPEC = json.loads(PAYLOAD)  # noqa: F821 - PAYLOAD is prepended by provision
CHUNK = 1 << 20


def emit(record):
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def regular_files(base):
    """Yield (full path, path relative to base with '/') of regular files; no symlinks."""
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            try:
                mode = os.lstat(full).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield full, os.path.relpath(full, base).replace(os.sep, "/")


def harvest(root):
    label, base = root["label"], root["path"]
    if root["kind"] == "file":
        try:
            ok = stat.S_ISREG(os.lstat(base).st_mode)
        except OSError:
            ok = False
        candidates = [(base, os.path.basename(base))] if ok else []
    else:
        candidates = regular_files(base) if os.path.isdir(base) else []
    only = root.get("only_under")
    for full, rel in candidates:
        parts = rel.split("/")
        if parts[-1] in SPEC["exclude_names"]:
            continue
        if only and only not in parts[:-1]:
            continue
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            emit({"kind": "problem", "label": label, "path": rel.encode("utf-8", "replace").decode(),
                  "error": "the file name is not UTF-8"})
            continue
        try:
            info = os.stat(full)
            digest = sha256_of(full)
        except OSError as error:
            emit({"kind": "problem", "label": label, "path": rel, "error": error.strerror or str(error)})
            continue
        emit({"kind": "file", "label": label, "path": rel, "bytes": info.st_size,
              "mtime_ns": info.st_mtime_ns, "sha256": digest})


def downloaded_models(models, recorded):
    """Model files provision fetched: those with a .verified record, a .partial (and the
    .partial.ranges of a file fetched in byte ranges), and the ones state.json lists."""
    companions = (".verified", ".partial.ranges", ".partial")
    found = {}
    for full, _ in (regular_files(models) if os.path.isdir(models) else []):
        for suffix in companions:
            if full.endswith(suffix):
                found[full] = True
                found[full[: -len(suffix)]] = True
                break
    for path in recorded:
        found[path] = True
        for suffix in companions:
            found[path + suffix] = True
    for path in sorted(found):
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
            emit({"kind": "model", "path": path, "bytes": info.st_size})


def folder_size(path):
    total = count = 0
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, dirs, files in os.walk(path):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                    count += 1
                except OSError:
                    pass
    emit({"kind": "size", "path": path, "bytes": total, "files": count})


for item in SPEC["roots"]:
    harvest(item)
if SPEC.get("models"):
    downloaded_models(SPEC["models"], SPEC.get("model_files", []))
for item in SPEC.get("sizes", []):
    folder_size(item)
emit({"kind": "done"})
