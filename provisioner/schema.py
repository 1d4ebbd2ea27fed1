"""Print the JSON Schema of node.yaml: ``python -m provisioner.schema > docs/node.schema.json``."""

import json

from .config import node_json_schema

if __name__ == "__main__":
    print(json.dumps(node_json_schema(), indent=2, sort_keys=True))
