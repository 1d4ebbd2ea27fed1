"""STAND-IN of ComfyUI's utils/extra_config.py, with a small YAML-subset reader (stdlib only).

Upstream uses PyYAML; the stand-in reads the subset extra_model_paths.yaml files use:
nested ``key: value`` mappings by indentation, ``#`` comments, quoted or plain scalars,
``true``/``false``, and ``|`` block scalars. Anything else raises ValueError, loudly.
"""

import logging
import os

import folder_paths


def _scalar(text):
    text = text.strip()
    if text in ("", "~", "null"):
        return None
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text[0] in "[{&*!>":
        raise ValueError("unsupported YAML in the stand-in reader: " + text)
    return text


def _strip_comment(line):
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def parse_yaml_subset(text):
    """Parse the mapping-only YAML subset described in the module docstring."""
    lines = text.splitlines()
    root = {}
    stack = [(-1, root)]
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = _strip_comment(raw)
        i += 1
        if not line.strip():
            continue
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise ValueError("tabs in indentation at line {}".format(i))
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if body.startswith("- "):
            raise ValueError("YAML lists are not supported by the stand-in reader (line {})".format(i))
        key, sep, rest = body.partition(":")
        if not sep:
            raise ValueError("expected 'key: value' at line {}: {!r}".format(i, raw))
        key = _scalar(key)
        while stack and indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        rest = rest.strip()
        if rest in ("|", "|-", "|+"):
            block = []
            block_indent = None
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip() == "":
                    block.append("")
                    i += 1
                    continue
                nindent = len(nxt) - len(nxt.lstrip(" "))
                if nindent <= indent:
                    break
                if block_indent is None:
                    block_indent = nindent
                block.append(nxt[block_indent:])
                i += 1
            parent[key] = "\n".join(block).rstrip("\n") + ("\n" if rest != "|-" else "")
        elif rest == "":
            child = {}
            parent[key] = child
            stack.append((indent, child))
        else:
            parent[key] = _scalar(rest)
    for key, value in list(root.items()):
        if value == {}:
            root[key] = None
    return root


def load_extra_path_config(yaml_path):
    with open(yaml_path, "r", encoding="utf-8") as stream:
        config = parse_yaml_subset(stream.read())
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for section in config:
        conf = config[section]
        if conf is None:
            continue
        base_path = None
        if "base_path" in conf:
            base_path = os.path.expandvars(os.path.expanduser(conf.pop("base_path")))
            if not os.path.isabs(base_path):
                base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = bool(conf.pop("is_default", False))
        for folder_name in conf:
            value = conf[folder_name]
            if not isinstance(value, str):
                continue
            for entry in value.split("\n"):
                if len(entry) == 0:
                    continue
                full_path = entry
                if base_path:
                    full_path = os.path.join(base_path, full_path)
                elif not os.path.isabs(full_path):
                    full_path = os.path.abspath(os.path.join(yaml_dir, entry))
                normalized = os.path.normpath(full_path)
                logging.info("Adding extra search path {} {}".format(folder_name, normalized))
                folder_paths.add_model_folder_path(folder_name, normalized, is_default)
