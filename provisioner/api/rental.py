"""The end of a rental: ``down`` (harvest, stop, remove the token, wipe) and ``session``
(``up``, hold the tunnel until a deadline, then ``down``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from ..core.config import NodeConfig, load_node
from ..core.errors import ProvisionError, UsageError
from ..install.engine import EventSink
from .connection import hub_token, open_node
from .planning import node_steps
from .provisioning import UpReport, up

if TYPE_CHECKING:
    import datetime

    from ..teardown.report import DownReport, TeardownEvent
    from ..teardown.session import SessionEvent, SessionReport


def check_wipe_options(wipe: str, keep_outputs_remote: bool) -> None:
    """Refuse ``--keep-outputs-remote`` with ``--wipe all``, which deletes the outputs too."""
    if keep_outputs_remote and wipe == "all":
        raise UsageError("--keep-outputs-remote contradicts --wipe all, which deletes the whole "
                         "work folder", "use --wipe models to free the disk and keep the outputs")


def down(config_path: str, *, wipe: str = "none", keep_outputs_remote: bool = False,
         discard_outputs: bool = False, dry_run: bool = False, force: bool = False,
         drain_timeout: float = 300.0, interrupt_after_timeout: bool = False,
         accept_new_host_key: bool = False, break_lock: bool = False, lock_wait: int = 10,
         on_event: Callable[["TeardownEvent"], None] = lambda event: None,
         config: Optional[NodeConfig] = None, connection=None) -> "DownReport":
    """Harvest the outputs, stop ComfyUI, remove the token, wipe as asked (teardown/down.py).

    Raises ``TeardownIncomplete`` (with ``.report``) when something is left undone; a re-run
    finishes it. A fleet passes ``config`` and its open ``connection``.
    """
    from ..node.facts import gather
    from ..node.layout import node_paths
    from ..teardown.down import down as teardown_down
    from ..teardown.options import DownOptions
    from ..teardown.service import service_for

    if wipe not in ("none", "models", "all"):
        raise UsageError(f"--wipe: {wipe!r} is not one of none, models, all",
                         "e.g. --wipe models to free the disk")
    check_wipe_options(wipe, keep_outputs_remote)
    cfg = config or load_node(config_path)
    options = DownOptions(wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                          discard_outputs=discard_outputs, dry_run=dry_run, force=force,
                          drain_timeout=drain_timeout, interrupt_after_timeout=interrupt_after_timeout,
                          lock_wait=lock_wait, break_lock=break_lock)
    token = hub_token(cfg)
    with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
        facts = gather(node, cfg.workdir)
        paths = node_paths(cfg, facts)
        try:
            service = node_steps(cfg, facts)["launch"]
        except (ProvisionError, KeyError):  # sizing or a user playbook must not block a teardown
            service = service_for(facts, paths)
        return teardown_down(node, cfg=cfg, config_path=config_path, facts=facts, paths=paths,
                             service=service, token=token, options=options, on_event=on_event)


def session(config_path: str, *, deadline: "datetime.datetime",
            warn_before: tuple = (), wipe: str = "none", keep_outputs_remote: bool = False,
            discard_outputs: bool = False, drain_timeout: float = 60.0, no_models: bool = False,
            no_smoke: bool = False,
            accept_new_host_key: bool = False, on_step: EventSink = lambda event: None,
            on_event: Callable[["SessionEvent"], None] = lambda event: None,
            on_teardown: Callable[["TeardownEvent"], None] = lambda event: None,
            on_tunnel_event: Callable[[str], None] = lambda message: None,
            ask: Callable[[], str] = lambda: "teardown") -> "SessionReport":
    """``up``, hold the tunnel until ``deadline`` (warning ``warn_before`` it), then ``down``.

    Ctrl-C calls ``ask()``: "teardown" ends now, "leave" keeps the node running. At the
    deadline, work still queued is interrupted after ``drain_timeout``. A teardown that cannot
    connect is retried until the link is back (teardown/session.py).
    """
    from ..teardown.session import run_session

    cfg = load_node(config_path)
    check_wipe_options(wipe, keep_outputs_remote)

    def bring_up(hold) -> UpReport:
        return up(config_path, no_models=no_models, no_smoke=no_smoke,
                  accept_new_host_key=accept_new_host_key,
                  on_event=on_step, hold=hold, on_tunnel_event=on_tunnel_event, config=cfg)

    def tear_down():
        return down(config_path, wipe=wipe, keep_outputs_remote=keep_outputs_remote,
                    discard_outputs=discard_outputs, drain_timeout=drain_timeout,
                    interrupt_after_timeout=True, accept_new_host_key=accept_new_host_key,
                    on_event=on_teardown, config=cfg)

    return run_session(cfg.name, deadline, warn_before=list(warn_before), bring_up=bring_up,
                       tear_down=tear_down, on_event=on_event, ask=ask)
