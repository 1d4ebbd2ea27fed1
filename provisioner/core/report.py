"""What every per-node command's ``--json`` document starts with."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class NodeReport(BaseModel):
    """A command's result for one node: its schema version first, then which node it was."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    node: str
    host: str
