"""The jinja2 environment for playbooks and templates: strict, with a shell-quote filter."""

from __future__ import annotations

import functools
import shlex
from typing import Any


@functools.lru_cache(maxsize=1)
def environment():
    """Return the shared environment: undefined variables are errors, ``q`` shell-quotes."""
    import jinja2

    from .resources import data_dir

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True,
                             loader=jinja2.FileSystemLoader(str(data_dir("templates"))))
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context``."""
    return environment().get_template(name).render(**context)
