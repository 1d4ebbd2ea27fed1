"""``git``: a repository checked out at a pinned ref.

A checkout with local changes, or with commits no remote ref or tag contains, is reported
and left alone: never reset (it may hold a user's work).
"""

from __future__ import annotations

from typing import Literal, Optional

from ...core.errors import StepFailed
from ...node.shell import q, sections, sh
from .base import Change, Step, StepContext


def _is_local_path(repo: str) -> bool:
    return repo.startswith(("/", "file://", "./", "../", "~"))


class GitStep(Step):
    kind: Literal["git"] = "git"
    repo: str
    ref: str
    dest: str
    git: str = "git"  # the playbook passes the one the facts found (toolchain.choose_git)

    @property
    def _git(self) -> str:
        """git, never asking for credentials: over SSH no one can answer a prompt, and macOS's
        keychain helper fails with "User interaction is not allowed"."""
        return f"GIT_TERMINAL_PROMPT=0 {q(self.git)} -c credential.helper="

    def describe(self) -> str:
        return self.description or f"{self.repo} at {self.ref} -> {self.dest}"

    def probe(self) -> Optional[str]:
        dest, ref, git = q(self.dest), q(self.ref + "^{commit}"), self._git
        # Only a checkout that is not at the ref pays for the (slower) containment query.
        return (
            f"if [ -d {dest}/.git ]; then "
            f"head=$({git} -C {dest} rev-parse HEAD 2>&1); "
            f"want=$({git} -C {dest} rev-parse -q --verify {ref} 2>/dev/null); "
            f"echo @@head; echo \"$head\"; echo @@want; echo \"$want\"; "
            f"echo @@origin; {git} -C {dest} config --get remote.origin.url; "
            f"echo @@dirty; {git} -C {dest} status --porcelain --untracked-files=no 2>&1 | head -5; "
            f"if [ \"$head\" != \"$want\" ]; then echo @@contained; "
            f"{git} -C {dest} for-each-ref --count=1 --contains HEAD refs/remotes refs/tags 2>/dev/null; fi; "
            f"else echo @@absent; fi"
        )

    def decide(self, output: Optional[str]) -> Optional[Change]:
        found = sections(output or "")
        if "absent" in found:
            return Change(f"{self.dest} is not cloned yet", {"clone": True})
        if found.get("dirty"):
            raise StepFailed(
                f"step {self.name}: {self.dest} has local changes ({found['dirty'].splitlines()[0]}); "
                "provision never resets a checkout",
                f"commit or stash them (git -C {q(self.dest)} stash), or delete the folder; "
                "then re-run up",
            )
        head, want = found.get("head", ""), found.get("want", "")
        if found.get("origin") and found["origin"] != self.repo:
            return Change(f"origin is {found['origin']}, wanted {self.repo}", {"set_url": True})
        if head and head == want:
            return None
        if not found.get("contained"):
            raise StepFailed(
                f"step {self.name}: {self.dest} is at {head[:12]}, which no remote branch or tag "
                "contains (local commits?); provision will not move it",
                f"push or save those commits, or delete {self.dest}; then re-run up",
            )
        if not want:
            return Change(f"{self.ref} is not in the checkout yet: fetch", {"fetch": True})
        return Change(f"at {head[:12]}, wanted {self.ref} ({want[:12]})")

    def apply(self, ctx: StepContext, change: Change) -> str:
        dest, repo, ref, git = q(self.dest), q(self.repo), q(self.ref), self._git
        if change.data.get("clone"):
            # A blobless clone fetches history without every old blob: much faster for
            # ComfyUI; a local path ignores the filter, so do not ask for it there.
            blobless = "" if _is_local_path(self.repo) else "--filter=blob:none "
            # The model download (a background step) may already be writing into dest/models:
            # then the tree is checked out around those files and .git moved in last.
            script = (f"mkdir -p \"$(dirname {dest})\" && rm -rf {dest}.partial && "
                      f"{git} clone --quiet --no-checkout {blobless}{repo} {dest}.partial && "
                      f"if [ -d {dest} ]; then "
                      f"{git} --git-dir={dest}.partial/.git --work-tree={dest} -c advice.detachedHead=false "
                      f"checkout --quiet --force --detach {ref} && mv {dest}.partial/.git {dest}/.git && "
                      f"rmdir {dest}.partial; else "
                      f"{git} -C {dest}.partial -c advice.detachedHead=false checkout --quiet "
                      f"--detach {ref} && mv {dest}.partial {dest}; fi")
            self._run(ctx, script)
            return f"cloned at {self.ref}"
        checkout = f"{git} -C {dest} -c advice.detachedHead=false checkout --quiet --detach {ref}"
        fetch = f"{git} -C {dest} fetch --quiet --tags origin"
        if change.data.get("set_url"):
            script = f"{git} -C {dest} remote set-url origin {repo} && {fetch} && {checkout}"
        else:
            have_ref = f"{git} -C {dest} rev-parse -q --verify {q(self.ref + '^{commit}')} >/dev/null"
            script = f"{{ {have_ref} || {fetch}; }} && {checkout}"
        self._run(ctx, script)
        return f"moved to {self.ref}"

    def _run(self, ctx: StepContext, script: str) -> None:
        from ...core.errors import CommandFailed

        try:
            ctx.node.run(sh(script), on_output=ctx.on_output)
        except CommandFailed as error:
            raise StepFailed(
                f"step {self.name}: cannot check out {self.ref} from {self.repo}: {error.result.tail(3)}",
                "check the repo and ref in node.yaml, then re-run up: it resumes from this step",
            ) from None
