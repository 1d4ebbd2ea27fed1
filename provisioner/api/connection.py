"""What every command needs to reach a node: its SSH connection, the tunnel to ComfyUI, and
the Hugging Face token (read from the environment, registered for redaction)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

from ..core.config import NodeConfig


@contextlib.contextmanager
def open_node(cfg: NodeConfig, *, accept_new_host_key: bool = False, reuse=None) -> Iterator:
    """Connect to the node of ``cfg`` for the duration of a ``with`` block.

    With ``reuse`` (a connection a fleet opened) that connection is used and left open."""
    from ..node.connect import connect, target_of

    if reuse is not None:
        yield reuse
        return
    node = connect(target_of(cfg), accept_new_host_key=accept_new_host_key)
    try:
        yield node
    finally:
        node.close()


@contextlib.contextmanager
def open_tunnel(cfg: NodeConfig, node, on_event: Callable[[str], None],
                accept_new_host_key: bool = False, remote_port: Optional[int] = None):
    """Open the local tunnel to ComfyUI over ``node``'s connection; reconnect if it drops."""
    from ..node.connect import connect, target_of
    from ..node.tunnel import Tunnel

    tunnel = Tunnel(node, remote_port or cfg.tunnel.remote_port, cfg.tunnel.local_port,
                    pinned=cfg.tunnel.pin_local_port, on_event=on_event,
                    reconnect=lambda: connect(target_of(cfg), accept_new_host_key=accept_new_host_key))
    with tunnel:
        try:
            yield tunnel
        finally:
            if tunnel.node is not node:
                tunnel.node.close()


def hub_token(cfg: NodeConfig) -> Optional[str]:
    """Read the HF token from the env var node.yaml names; register it for redaction."""
    import os

    from ..core.redact import register_secret

    token = os.environ.get(cfg.hf.token_env) or None
    register_secret(token)
    return token
