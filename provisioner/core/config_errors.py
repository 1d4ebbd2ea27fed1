"""node.yaml validation errors as one line naming the file, the field and the fix.

``config_error`` turns pydantic's ``ValidationError`` into a ``ConfigError``: an unknown key
suggests the closest valid one and lists the keys valid there; a value is echoed only when it
is short and not a would-be secret.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from .errors import ConfigError

_SECRET_FIELDS = ("token_env", "url")


def config_error(path: Path, error: ValidationError, model: type[BaseModel], where: str) -> ConfigError:
    """Return the ``ConfigError`` for the first problem pydantic found in ``path``."""
    first = error.errors()[0]
    location = first["loc"]
    field = ".".join(str(part) for part in location) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, location[:-1])
        valid = list(parent.model_fields) if parent else []
        name = str(location[-1])
        hint = f"valid keys here: {', '.join(valid)}" if valid else ""
        return ConfigError(f"{path}: {where}{field}: unknown key{suggest(name, valid)}", hint)
    if kind == "missing":
        return ConfigError(f"{path}: {where}{field}: required field is missing",
                           f"add {location[-1]}: to the file")
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    got = first.get("input")
    shown = ""
    # Never echo a value that may hold a secret (a pasted token, a URL's password or signed
    # query); other scalars help the user.
    if not (location and location[-1] in _SECRET_FIELDS) and isinstance(got, (int, float, str)) and \
            not isinstance(got, bool) and len(str(got)) < 80:
        shown = f" (got {got!r})"
    return ConfigError(f"{path}: {where}{field}: {message}{shown}", _fix_for(kind, location))


def _fix_for(kind: str, location: tuple) -> str:
    if kind in ("greater_than_equal", "less_than_equal") and location and "port" in str(location[-1]):
        return "use a TCP port between 1 and 65535"
    if kind == "literal_error":
        return "use one of the listed values"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "check the value's type against docs/node.schema.json"
    return "see docs/node.schema.json for every field"


def _model_at(model: type[BaseModel], location: tuple) -> Optional[type[BaseModel]]:
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return None
        annotation = field.annotation
        current = _first_model(annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found:
            return found
    return None


def suggest(name: str, valid: list[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest of ``valid``, or an empty string."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
