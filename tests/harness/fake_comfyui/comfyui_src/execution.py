"""STAND-IN of ComfyUI's execution.py: prompt validation, the queue, and a node executor.

Validation follows ComfyUI v0.3.64 (FACTS.md): class names are checked for every node;
inputs only for nodes that feed an output node; error types invalid_prompt,
prompt_no_outputs, prompt_outputs_failed_validation with per-node required_input_missing,
value_not_in_list, invalid_input_type, value_smaller_than_min, value_bigger_than_max,
return_type_mismatch, bad_linked_input, exception_during_inner_validation.
Execution caches each node's outputs by its inputs (and those of its inputs), as upstream.

FAKE_COMFYUI_FAIL_CLASS=<class_type> makes every node of that class raise when it executes
(FAKE_COMFYUI_FAIL_EXCEPTION=<type name>, default RuntimeError; FAKE_COMFYUI_FAIL_MESSAGE=<text>,
default "stand-in failure in <class_type>"): the prompt ends with execution_error, as upstream.
"""

import builtins
import heapq
import json
import logging
import os
import threading
import time
import traceback

import nodes


def _error(type_, message, details="", extra_info=None):
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def _is_link(value):
    return isinstance(value, list)


def validate_inputs(prompt, node_id, validated):
    """Validate one node and, recursively, the nodes feeding it; cache results in ``validated``."""
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    class_type = node["class_type"]
    obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]
    spec = obj_class.INPUT_TYPES()
    inputs = node.get("inputs", {}) or {}
    errors = []
    valid = True
    checked = [(name, info, True) for name, info in spec.get("required", {}).items()]
    checked += [(name, info, False) for name, info in spec.get("optional", {}).items()]
    for name, info, required in checked:
        if name not in inputs:
            if required:
                errors.append(_error("required_input_missing", "Required input is missing", name,
                                     {"input_name": name}))
            continue
        val = inputs[name]
        type_input = info[0]
        extra = info[1] if len(info) > 1 else {}
        if _is_link(val):
            if len(val) != 2:
                errors.append(_error("bad_linked_input",
                                     "Bad linked input, must be a length-2 list of [node_id, slot_index]", name,
                                     {"input_name": name, "input_config": info, "received_value": val}))
                continue
            o_id, o_slot = str(val[0]), val[1]
            try:
                o_class = nodes.NODE_CLASS_MAPPINGS[prompt[o_id]["class_type"]]
                received_type = o_class.RETURN_TYPES[o_slot]
                if not isinstance(type_input, list) and received_type != type_input and type_input != "*":
                    details = "{}, received_type({}) mismatch input_type({})".format(name, received_type, type_input)
                    errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                         details, {"input_name": name, "input_config": info,
                                                   "received_type": received_type, "linked_node": val}))
                    continue
                r = validate_inputs(prompt, o_id, validated)
                if r[0] is False:
                    valid = False
                    continue
            except Exception as ex:
                errors.append(_error("exception_during_inner_validation", "Exception when validating inner node",
                                     str(ex), {"input_name": name, "input_config": info,
                                               "exception_message": str(ex),
                                               "exception_type": type(ex).__name__,
                                               "traceback": traceback.format_tb(ex.__traceback__),
                                               "linked_node": val}))
                continue
            continue
        if isinstance(type_input, list):
            if val not in type_input:
                list_info = "(list of length {})".format(len(type_input)) if len(type_input) > 20 else str(type_input)
                errors.append(_error("value_not_in_list", "Value not in list",
                                     "{}: '{}' not in {}".format(name, val, list_info),
                                     {"input_name": name, "input_config": info, "received_value": val}))
            continue
        try:
            if type_input == "INT":
                val = int(val)
            elif type_input == "FLOAT":
                val = float(val)
            elif type_input == "STRING":
                val = str(val)
            elif type_input == "BOOLEAN":
                val = bool(val)
        except Exception as ex:
            errors.append(_error("invalid_input_type",
                                 "Failed to convert an input value to a {} value".format(type_input),
                                 "{}, {}, {}".format(name, val, ex),
                                 {"input_name": name, "input_config": info, "received_value": val,
                                  "exception_message": str(ex)}))
            continue
        if type_input in ("INT", "FLOAT"):
            if "min" in extra and val < extra["min"]:
                errors.append(_error("value_smaller_than_min",
                                     "Value {} smaller than min of {}".format(val, extra["min"]), name,
                                     {"input_name": name, "input_config": info, "received_value": val}))
                continue
            if "max" in extra and val > extra["max"]:
                errors.append(_error("value_bigger_than_max",
                                     "Value {} bigger than max of {}".format(val, extra["max"]), name,
                                     {"input_name": name, "input_config": info, "received_value": val}))
                continue
    result = (valid and not errors, errors, node_id)
    validated[node_id] = result
    return result


def validate_prompt(prompt):
    """Return (ok, error, outputs_to_execute, node_errors) as upstream's validate_prompt."""
    outputs = set()
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return (False, _error("invalid_prompt",
                                  "Cannot execute because a node is missing the class_type property.",
                                  "Node ID '#{}'".format(node_id)), [], {})
        class_type = node["class_type"]
        if class_type not in nodes.NODE_CLASS_MAPPINGS:
            return (False, _error("invalid_prompt",
                                  "Cannot execute because node {} does not exist.".format(class_type),
                                  "Node ID '#{}'".format(node_id)), [], {})
        if getattr(nodes.NODE_CLASS_MAPPINGS[class_type], "OUTPUT_NODE", False):
            outputs.add(node_id)
    if not outputs:
        return (False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {})

    good_outputs = set()
    errors = []
    node_errors = {}
    validated = {}
    for o in sorted(outputs, key=lambda k: (len(k), k)):
        try:
            valid, reasons, _ = validate_inputs(prompt, o, validated)
        except Exception as ex:
            valid = False
            reasons = [_error("exception_during_validation", "Exception when validating node", str(ex),
                              {"exception_type": type(ex).__name__,
                               "traceback": traceback.format_tb(ex.__traceback__)})]
            validated[o] = (False, reasons, o)
        if valid is True:
            good_outputs.add(o)
            continue
        logging.error("Failed to validate prompt for output {}:".format(o))
        errors.append((o, reasons))
        for node_id, result in validated.items():
            if result[0] is not True and len(result[1]) > 0:
                if node_id not in node_errors:
                    class_type = prompt[node_id]["class_type"]
                    node_errors[node_id] = {"errors": result[1], "dependent_outputs": [], "class_type": class_type}
                    logging.error("* {} {}:".format(class_type, node_id))
                    for reason in result[1]:
                        logging.error("  - {}: {}".format(reason["message"], reason["details"]))
                node_errors[node_id]["dependent_outputs"].append(o)
        logging.error("Output will be ignored")

    if not good_outputs:
        lines = []
        for _, reasons in errors:
            for reason in reasons:
                lines.append("{}: {}".format(reason["message"], reason["details"]))
        return (False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                              "\n".join(lines)), list(good_outputs), node_errors)
    return (True, None, sorted(good_outputs), node_errors)


class PromptQueue:
    """Pending prompts by number, the running one, and the history (all guarded by one lock)."""

    def __init__(self, server):
        self.server = server
        self.cond = threading.Condition()
        self.queue = []
        self.running = {}
        self.history = {}
        self.flags = {}
        self.answered = {}

    def put(self, item, answered=None):
        """Queue a prompt; ``answered`` (an Event) is set once POST /prompt has replied."""
        with self.cond:
            if answered is not None:
                self.answered[item[1]] = answered
            heapq.heappush(self.queue, item)
            self.server.queue_updated()
            self.cond.notify()

    def wait_answered(self, prompt_id, timeout=5.0):
        """Wait until the client has its prompt_id: no model loads here, so without this a prompt
        could run (and FAKE_COMFYUI_MPS_ABORT kill the process) before POST /prompt replies, which
        cannot happen on a real node (loading the models takes seconds)."""
        with self.cond:
            event = self.answered.pop(prompt_id, None)
        if event is not None:
            event.wait(timeout)

    def get(self, timeout=None):
        """Pop the next prompt (lowest number); None when ``timeout`` passes first."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.queue, timeout=timeout):
                return None
            item = heapq.heappop(self.queue)
            self.running[item[1]] = item
            self.server.queue_updated()
            return item

    def task_done(self, item, outputs, status):
        with self.cond:
            self.running.pop(item[1], None)
            self.history[item[1]] = {
                "prompt": list(item),
                "outputs": outputs,
                "status": status,
                "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                         for nid in outputs},
            }
        self.server.queue_updated()

    def tasks_remaining(self):
        with self.cond:
            return len(self.queue) + len(self.running)

    def current_queue(self):
        with self.cond:
            return [list(x) for x in self.running.values()], [list(x) for x in sorted(self.queue)]

    def get_history(self, prompt_id=None, max_items=None):
        with self.cond:
            if prompt_id is not None:
                return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}
            items = list(self.history.items())
            if max_items is not None:
                items = items[-max_items:]
            return dict(items)

    def wipe_queue(self):
        with self.cond:
            self.queue = []
            self.answered = {}
        self.server.queue_updated()

    def delete_queue_item(self, prompt_id):
        with self.cond:
            self.queue = [x for x in self.queue if x[1] != prompt_id]
            heapq.heapify(self.queue)
            self.answered.pop(prompt_id, None)
        self.server.queue_updated()

    def wipe_history(self):
        with self.cond:
            self.history = {}

    def delete_history_item(self, prompt_id):
        with self.cond:
            self.history.pop(prompt_id, None)

    def set_flag(self, name, value):
        with self.cond:
            self.flags[name] = value

    def pop_flags(self):
        with self.cond:
            flags, self.flags = self.flags, {}
            return flags


def full_type_name(klass):
    """As upstream: builtins by bare name, others as module.qualname."""
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


def format_value(x):
    """As upstream (current_inputs of execution_error)."""
    if x is None:
        return None
    if isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


def _stand_in_exception_type(name):
    """The exception class FAKE_COMFYUI_FAIL_EXCEPTION names: a builtin one, else a new class with
    that (dotted) name, so full_type_name() gives back exactly ``name``."""
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    module, _, qualname = name.rpartition(".")
    return type(qualname, (Exception,), {"__module__": module or "builtins"})


def fail_if_asked(class_type):
    """FAKE_COMFYUI_FAIL_CLASS: raise as a failing node of that class would."""
    if not class_type or os.environ.get("FAKE_COMFYUI_FAIL_CLASS") != class_type:
        return
    exc_type = _stand_in_exception_type(os.environ.get("FAKE_COMFYUI_FAIL_EXCEPTION") or "RuntimeError")
    raise exc_type(os.environ.get("FAKE_COMFYUI_FAIL_MESSAGE") or "stand-in failure in {}".format(class_type))


def _signature(prompt, node_id, memo):
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    parts = []
    for name in sorted(node.get("inputs", {})):
        val = node["inputs"][name]
        if _is_link(val) and len(val) == 2:
            parts.append((name, "link", _signature(prompt, str(val[0]), memo), val[1]))
        else:
            parts.append((name, json.dumps(val, sort_keys=True)))
    memo[node_id] = (node["class_type"], tuple(parts))
    return memo[node_id]


class PromptExecutor:
    """Run the nodes an output needs, in dependency order, with a per-node output cache."""

    def __init__(self, server, cache=True):
        self.server = server
        self.use_cache = cache
        self.cache = {}

    def reset(self):
        self.cache = {}

    def _send(self, event, data, client_id, broadcast=False):
        if client_id is not None or broadcast:
            self.server.send_sync(event, data, client_id)

    def execute(self, prompt, prompt_id, extra_data, outputs):
        """Return (outputs_ui, status) for the history."""
        nodes.interrupt_processing(False)
        client_id = extra_data.get("client_id")
        messages = []

        def add(event, data, broadcast=False):
            data = dict(data, timestamp=int(time.time() * 1000))
            messages.append([event, data])
            self._send(event, data, client_id, broadcast)

        add("execution_start", {"prompt_id": prompt_id})
        order = []
        seen = set()

        def visit(nid):
            if nid in seen:
                return
            seen.add(nid)
            for val in prompt[nid].get("inputs", {}).values():
                if _is_link(val) and len(val) == 2:
                    visit(str(val[0]))
            order.append(nid)

        for o in outputs:
            visit(o)
        memo = {}
        sigs = {nid: _signature(prompt, nid, memo) for nid in order}
        cached = [nid for nid in order if self.use_cache and sigs[nid] in self.cache]
        add("execution_cached", {"nodes": cached, "prompt_id": prompt_id})

        results = {}
        ui_outputs = {}
        executed = []
        for nid in order:
            node = prompt[nid]
            class_type = node["class_type"]
            if nid in cached:
                results[nid], ui = self.cache[sigs[nid]]
                if ui is not None:
                    ui_outputs[nid] = ui
                    self._send("executed", {"node": nid, "display_node": nid, "output": ui,
                                            "prompt_id": prompt_id}, client_id)
                continue
            self._send("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, client_id)
            self.server.last_node_id = nid
            obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]
            spec = obj_class.INPUT_TYPES()
            kwargs = {}
            for name, val in node.get("inputs", {}).items():
                if name not in spec.get("required", {}) and name not in spec.get("optional", {}):
                    continue
                if _is_link(val) and len(val) == 2:
                    kwargs[name] = results[str(val[0])][val[1]]
                else:
                    kind = (spec.get("required", {}).get(name) or spec.get("optional", {}).get(name))[0]
                    kwargs[name] = int(val) if kind == "INT" else float(val) if kind == "FLOAT" else val
            for name, kind in spec.get("hidden", {}).items():
                if kind == "PROMPT":
                    kwargs[name] = prompt
                elif kind == "EXTRA_PNGINFO":
                    kwargs[name] = extra_data.get("extra_pnginfo")

            def progress(value, total, nid=nid):
                self.server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id,
                                                   "node": nid}, client_id)

            nodes.Context.progress = progress
            try:
                fail_if_asked(class_type)
                out = getattr(obj_class(), obj_class.FUNCTION)(**kwargs)
            except nodes.InterruptProcessingException:
                logging.info("Processing interrupted")
                add("execution_interrupted", {"prompt_id": prompt_id, "node_id": nid, "node_type": class_type,
                                              "executed": executed})
                return {}, {"status_str": "error", "completed": False, "messages": messages}
            except Exception as ex:
                tb = traceback.format_exc()
                logging.error("!!! Exception during processing !!! {}".format(ex))
                logging.error(tb)
                add("execution_error", {
                    "prompt_id": prompt_id, "node_id": nid, "node_type": class_type, "executed": executed,
                    "exception_message": "{}\n".format(ex), "exception_type": full_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [format_value(v)] for k, v in kwargs.items() if k not in ("prompt",)},
                    "current_outputs": list(cached),
                })
                return {}, {"status_str": "error", "completed": False, "messages": messages}
            finally:
                nodes.Context.progress = staticmethod(lambda value, total: None)
            ui = None
            if isinstance(out, dict):
                ui = out.get("ui")
                out = out.get("result", ())
            results[nid] = out
            if ui is not None:
                ui_outputs[nid] = ui
                self._send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id},
                           client_id)
            if self.use_cache:
                self.cache[sigs[nid]] = (out, ui)
            executed.append(nid)
        add("execution_success", {"prompt_id": prompt_id})
        return ui_outputs, {"status_str": "success", "completed": True, "messages": messages}
