"""``wait_http``: ComfyUI answers, runs on the expected device and lists the planned models.

A Mac whose launchd session cannot reach Metal would run ComfyUI on the CPU at a fraction of
the speed without saying so: the device is checked and a mismatch fails loudly. While
waiting, the log is read for a start-up traceback (a crash loop) or a taken port, so those
fail at once with the log's last lines instead of at the deadline.
"""

from __future__ import annotations

import time
from typing import Literal, Optional

from ...comfy.client import ComfyClient, ComfyUnavailable
from ...core.errors import StepFailed
from ...node.shell import q
from .base import Change, Step, StepContext

START_MARKER = "provision: starting ComfyUI"


class WaitHttpStep(Step):
    kind: Literal["wait_http"] = "wait_http"
    port: int
    device: str
    log: str
    timeout: float = 180.0
    unet_loader: str = "UnetLoaderGGUF"
    expect_unet: Optional[str] = None
    expect_clips: list[str] = []
    expect_argv: Optional[list[str]] = None  # ComfyUI's sys.argv, as /system_stats reports it

    def describe(self) -> str:
        return self.description or f"wait for ComfyUI on 127.0.0.1:{self.port} ({self.device})"

    def decide(self, output: Optional[str]) -> Optional[Change]:
        return Change("health is checked against the node")

    def decide_live(self, ctx: StepContext, output: Optional[str]) -> Optional[Change]:
        try:
            problem = self.check(ComfyClient(ctx.node, self.port, timeout=5))
        except ComfyUnavailable as error:
            return Change(f"not answering yet ({error})")
        return Change(problem) if problem else None

    def check(self, client: ComfyClient) -> Optional[str]:
        """Return what is wrong with a ComfyUI that answers, or None when healthy."""
        stats = client.system_stats()
        argv = (stats.get("system") or {}).get("argv")
        if self.expect_argv is not None and argv != self.expect_argv:
            return (f"port {self.port} answers, but not with the ComfyUI provision started "
                    f"(its command line is {argv}); another process holds the port")
        devices = stats.get("devices") or [{}]
        kind = devices[0].get("type")
        if kind != self.device:
            return (f"ComfyUI runs on {kind!r}, expected {self.device!r}"
                    + (": the launchd session has no Metal access, so every image would be "
                       "rendered on the CPU" if self.device == "mps" else ""))
        if self.expect_unet and self.expect_unet not in client.choices(self.unet_loader, "unet_name"):
            return f"{self.unet_loader} does not list {self.expect_unet} (models/unet)"
        if self.expect_clips:
            listed = client.choices("DualCLIPLoaderGGUF", "clip_name1")
            missing = [name for name in self.expect_clips if name not in listed]
            if missing:
                return f"DualCLIPLoaderGGUF does not list {', '.join(missing)} (models/clip)"
        return None

    def apply(self, ctx: StepContext, change: Change) -> str:
        client = ComfyClient(ctx.node, self.port, timeout=5)
        started = time.monotonic()
        deadline = started + self.timeout
        next_log_check = started + 1.0
        pause = 0.1  # each look is one SSH channel: cheap; ComfyUI may be up at once
        while True:
            try:
                problem = self.check(client)
                break
            except ComfyUnavailable as error:
                now = time.monotonic()
                if now >= next_log_check:
                    next_log_check = now + 2.0
                    self._fail_on_log(ctx)
                if now > deadline:
                    raise StepFailed(
                        f"step {self.name}: ComfyUI did not answer on 127.0.0.1:{self.port} within "
                        f"{self.timeout:.0f} s ({error}); last log lines: {self._tail(ctx, 8)}",
                        "see `provision logs NODE.yaml`; re-run `provision up` once fixed")
                ctx.on_output(f"waiting for ComfyUI on 127.0.0.1:{self.port} "
                              f"({now - started:.0f}s)")
                time.sleep(pause)
                pause = min(pause * 1.5, 0.5)
        if problem:
            raise StepFailed(f"step {self.name}: {problem}; last log lines: {self._tail(ctx, 6)}",
                             "re-run `provision up` once fixed; `provision logs` shows the whole log")
        return f"healthy on {self.device} after {time.monotonic() - started:.1f}s"

    def _since_start(self, ctx: StepContext) -> str:
        result = ctx.node.run(f"tail -n 200 {q(self.log)} 2>/dev/null", check=False)
        text = result.stdout
        marker = text.rfind(START_MARKER)
        return text[marker:] if marker >= 0 else text

    def _tail(self, ctx: StepContext, lines: int) -> str:
        return " | ".join(self._since_start(ctx).strip().splitlines()[-lines:]) or "(empty log)"

    def _fail_on_log(self, ctx: StepContext) -> None:
        text = self._since_start(ctx)
        if "address already in use" in text.lower():
            raise StepFailed(
                f"step {self.name}: port {self.port} is already taken on the node; "
                f"last log lines: {self._tail(ctx, 4)}",
                "stop whatever listens there, or set tunnel.remote_port in node.yaml; then re-run up")
        if "Traceback (most recent call last)" in text:
            raise StepFailed(
                f"step {self.name}: ComfyUI crashed on start-up (the supervisor keeps restarting it); "
                f"last log lines: {self._tail(ctx, 8)}",
                "fix the cause shown, then re-run `provision up`; `provision logs` has the whole log")
