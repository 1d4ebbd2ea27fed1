"""Print a JSON Schema generated from the models: node.yaml and the --json reports.

    python -m provisioner.api.schema node  > docs/node.schema.json
    python -m provisioner.api.schema plan  > docs/plan.schema.json
    python -m provisioner.api.schema up    > docs/up.schema.json
    python -m provisioner.api.schema status > docs/status.schema.json
    python -m provisioner.api.schema run > docs/run.schema.json
"""

import json
import sys
from typing import Any

from ..core.config import node_json_schema


def report_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema of a command's ``--json`` document."""
    from ..batch.report import BatchReport
    from .planning import PlanReport
    from .provisioning import UpReport
    from .service import StatusReport

    models = {"plan": PlanReport, "up": UpReport, "status": StatusReport, "run": BatchReport}
    schema = models[name].model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"provision {name} --json"
    return schema


def schema_for(name: str) -> dict[str, Any]:
    return node_json_schema() if name == "node" else report_schema(name)


if __name__ == "__main__":
    print(json.dumps(schema_for(sys.argv[1] if len(sys.argv) > 1 else "node"), indent=2, sort_keys=True))
