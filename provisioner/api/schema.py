"""Print a JSON Schema generated from the models: node.yaml and the --json reports.

    python -m provisioner.schema node  > docs/node.schema.json
    python -m provisioner.schema plan  > docs/plan.schema.json
    python -m provisioner.schema up    > docs/up.schema.json
    python -m provisioner.schema status > docs/status.schema.json
"""

import json
import sys
from typing import Any

from ..core.config import node_json_schema


def report_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema of a command's ``--json`` document."""
    from .. import api

    models = {"plan": api.PlanReport, "up": api.UpReport, "status": api.StatusReport}
    schema = models[name].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"provision {name} --json"
    return schema


def schema_for(name: str) -> dict[str, Any]:
    return node_json_schema() if name == "node" else report_schema(name)


if __name__ == "__main__":
    print(json.dumps(schema_for(sys.argv[1] if len(sys.argv) > 1 else "node"), indent=2, sort_keys=True))
