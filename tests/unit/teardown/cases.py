"""Files on the node as the harvest tests describe them."""

from provisioner.teardown.harvest_plan import RemoteFile

SHA_A = "a" * 64
SHA_B = "b" * 64


def remote(path: str, sha: str = SHA_A, size: int = 10, label: str = "output") -> RemoteFile:
    return RemoteFile(label=label, path=path, remote=f"/n/ComfyUI/{label}/{path}", bytes=size,
                      mtime_ns=1_700_000_000_000_000_000, sha256=sha)
