"""STAND-IN of ComfyUI's server.py on the standard library (http.server + a minimal RFC 6455
WebSocket). Every route is also served under /api/..., as upstream.
"""

import base64
import hashlib
import json
import logging
import os
import socket
import struct
import sys
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import comfy.model_management
import comfyui_version
import execution
import folder_paths
import nodes

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

INDEX_HTML = (b"<!doctype html><html><head><title>ComfyUI</title></head><body>"
              b"<p>ComfyUI stand-in (tests only): no frontend is served.</p></body></html>")


class _WebSocket:
    """One server side WebSocket: text frames out (locked), frames in on the handler thread."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False

    def send_text(self, text):
        data = text.encode("utf-8")
        header = bytearray([0x81])
        if len(data) < 126:
            header.append(len(data))
        elif len(data) < 65536:
            header.append(126)
            header += struct.pack(">H", len(data))
        else:
            header.append(127)
            header += struct.pack(">Q", len(data))
        self._send_raw(bytes(header) + data)

    def _send_raw(self, payload):
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(payload)
            except OSError:
                self.closed = True

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def serve(self):
        """Read frames until the peer closes; answer ping and close."""
        try:
            while True:
                b1, b2 = self._recv_exact(2)
                opcode = b1 & 0x0F
                length = b2 & 0x7F
                if length == 126:
                    length = struct.unpack(">H", self._recv_exact(2))[0]
                elif length == 127:
                    length = struct.unpack(">Q", self._recv_exact(8))[0]
                mask = self._recv_exact(4) if b2 & 0x80 else None
                data = self._recv_exact(length)
                if mask:
                    data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                if opcode == 0x8:
                    self._send_raw(b"\x88" + bytes([len(data[:2])]) + data[:2])
                    return
                if opcode == 0x9:
                    self._send_raw(b"\x8a" + bytes([len(data)]) + data)
        except (ConnectionError, OSError, ValueError):
            return
        finally:
            with self.lock:
                self.closed = True


class PromptServer:
    """Holds the queue, the sockets and the routes; ``start`` binds every --listen address."""

    def __init__(self):
        self.prompt_queue = execution.PromptQueue(self)
        self.sockets = {}
        self.sockets_lock = threading.Lock()
        self.number = 0
        self.number_lock = threading.Lock()
        self.client_id = None
        self.last_node_id = None
        self.httpds = []

    # ------------------------------------------------------------------ messages
    def send_sync(self, event, data, sid=None):
        message = json.dumps({"type": event, "data": data})
        with self.sockets_lock:
            targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            ws.send_text(message)

    def queue_info(self):
        return {"exec_info": {"queue_remaining": self.prompt_queue.tasks_remaining()}}

    def queue_updated(self):
        self.send_sync("status", {"status": self.queue_info()})

    # ------------------------------------------------------------------ lifecycle
    def start(self, addresses, port):
        handler = _make_handler(self)
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET

            class Server(ThreadingHTTPServer):
                address_family = family
                daemon_threads = True

                def server_bind(self):
                    if self.address_family == socket.AF_INET6:
                        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    try:
                        super().server_bind()
                    except OSError as e:
                        raise OSError(e.errno, "error while attempting to bind on address {!r}: {}".format(
                            self.server_address, (e.strerror or str(e)).lower())) from None

            httpd = Server((address, port), handler)
            self.httpds.append(httpd)
            threading.Thread(target=httpd.serve_forever, name="http-" + address, daemon=True).start()
            shown = "[{}]".format(address) if ":" in address else address
            logging.info("To see the GUI go to: http://{}:{}".format(shown, port))


def _node_info(name):
    cls = nodes.NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    info = {
        "input": _jsonable(spec),
        "input_order": {k: list(v.keys()) for k, v in spec.items()},
        "output": list(cls.RETURN_TYPES),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "name": name,
        "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    return info


def _jsonable(obj):
    if isinstance(obj, (list, tuple)):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj


def _make_handler(server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Python/{} aiohttp-stand-in".format(sys.version.split()[0])

        def log_message(self, fmt, *args):  # upstream does not log requests
            pass

        # ---------------------------------------------------------- plumbing
        def _send(self, status, body=b"", content_type="application/json", headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj, status=200):
            self._send(status, json.dumps(obj).encode("utf-8"))

        def _route(self):
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path
            if path.startswith("/api/"):
                path = path[4:]
            return path, dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))

        def _body_json(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw.decode("utf-8") or "null")

        # ---------------------------------------------------------- GET
        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path, query = self._route()
            if path == "/ws":
                return self._websocket(query)
            if path == "/":
                return self._send(200, INDEX_HTML, "text/html")
            if path == "/system_stats":
                return self._json(_system_stats())
            if path == "/object_info":
                return self._json({n: _node_info(n) for n in nodes.NODE_CLASS_MAPPINGS})
            if path.startswith("/object_info/"):
                name = urllib.parse.unquote(path[len("/object_info/"):])
                return self._json({name: _node_info(name)} if name in nodes.NODE_CLASS_MAPPINGS else {})
            if path == "/models":
                return self._json(list(folder_paths.folder_names_and_paths.keys()))
            if path.startswith("/models/"):
                key = urllib.parse.unquote(path[len("/models/"):])
                if key not in folder_paths.folder_names_and_paths:
                    return self._send(404, b"404: Not Found", "text/plain")
                return self._json(folder_paths.get_filename_list(key))
            if path == "/embeddings":
                return self._json([os.path.splitext(a)[0] for a in folder_paths.get_filename_list("embeddings")])
            if path == "/extensions":
                return self._json([])
            if path == "/prompt":
                return self._json(server.queue_info())
            if path == "/queue":
                running, pending = server.prompt_queue.current_queue()
                return self._json({"queue_running": running, "queue_pending": pending})
            if path == "/history":
                max_items = query.get("max_items")
                return self._json(server.prompt_queue.get_history(
                    max_items=int(max_items) if max_items else None))
            if path.startswith("/history/"):
                return self._json(server.prompt_queue.get_history(prompt_id=path[len("/history/"):]))
            if path == "/view":
                return self._view(query)
            return self._send(404, b"404: Not Found", "text/plain")

        def _view(self, query):
            if "filename" not in query:
                return self._send(404, b"404: Not Found", "text/plain")
            filename = query["filename"]
            if not filename or filename[0] == "/" or ".." in filename:
                return self._send(400, b"400: Bad Request", "text/plain")
            output_dir = folder_paths.get_directory_by_type(query.get("type", "output"))
            if output_dir is None:
                return self._send(400, b"400: Bad Request", "text/plain")
            if "subfolder" in query:
                full = os.path.join(output_dir, query["subfolder"])
                if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                    return self._send(403, b"403: Forbidden", "text/plain")
                output_dir = full
            file = os.path.join(output_dir, os.path.basename(filename))
            if not os.path.isfile(file):
                return self._send(404, b"404: Not Found", "text/plain")
            with open(file, "rb") as f:
                data = f.read()
            ctype = "image/png" if file.endswith(".png") else "application/octet-stream"
            return self._send(200, data, ctype, {"Content-Disposition": 'filename="{}"'.format(
                os.path.basename(file))})

        def _websocket(self, query):
            key = self.headers.get("Sec-WebSocket-Key")
            if not key or "websocket" not in (self.headers.get("Upgrade") or "").lower():
                return self._send(400, b"400: Bad Request: expected a WebSocket upgrade", "text/plain")
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()).decode("ascii")
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            sid = query.get("clientId") or uuid.uuid4().hex
            ws = _WebSocket(self.connection)
            with server.sockets_lock:
                server.sockets[sid] = ws
            try:
                ws.send_text(json.dumps({"type": "status", "data": {"status": server.queue_info(), "sid": sid}}))
                ws.serve()
            finally:
                with server.sockets_lock:
                    if server.sockets.get(sid) is ws:
                        del server.sockets[sid]
                self.close_connection = True

        # ---------------------------------------------------------- POST
        def do_POST(self):
            path, _ = self._route()
            try:
                body = self._body_json()
            except (ValueError, UnicodeDecodeError) as ex:
                # aiohttp answers an unparsable body with a 500 and a text page.
                logging.error("Error handling request: {}".format(ex))
                return self._send(500, b"500 Internal Server Error\n\nServer got itself in trouble",
                                  "text/plain")
            if not isinstance(body, dict):
                body = {}
            if path == "/prompt":
                return self._post_prompt(body)
            if path == "/interrupt":
                nodes.interrupt_processing(True)
                return self._send(200, b"", "application/octet-stream")
            if path == "/free":
                if body.get("unload_models", False):
                    server.prompt_queue.set_flag("unload_models", True)
                if body.get("free_memory", False):
                    server.prompt_queue.set_flag("free_memory", True)
                return self._send(200, b"", "application/octet-stream")
            if path == "/queue":
                if body.get("clear"):
                    server.prompt_queue.wipe_queue()
                for pid in body.get("delete", []) or []:
                    server.prompt_queue.delete_queue_item(pid)
                return self._send(200, b"", "application/octet-stream")
            if path == "/history":
                if body.get("clear"):
                    server.prompt_queue.wipe_history()
                for pid in body.get("delete", []) or []:
                    server.prompt_queue.delete_history_item(pid)
                return self._send(200, b"", "application/octet-stream")
            return self._send(405, b"405: Method Not Allowed", "text/plain")

        def _post_prompt(self, body):
            logging.info("got prompt")
            with server.number_lock:
                if "number" in body:
                    number = float(body["number"])
                else:
                    number = server.number
                    if body.get("front"):
                        number = -number
                    server.number += 1
            if "prompt" not in body:
                error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                         "extra_info": {}}
                return self._json({"error": error, "node_errors": {}}, 400)
            prompt = body["prompt"]
            if not isinstance(prompt, dict):
                error = {"type": "invalid_prompt", "message": "Invalid prompt: the prompt must be an object",
                         "details": "", "extra_info": {}}
                return self._json({"error": error, "node_errors": {}}, 400)
            valid = execution.validate_prompt(prompt)
            extra_data = dict(body.get("extra_data") or {})
            if "client_id" in body:
                extra_data["client_id"] = body["client_id"]
            if valid[0]:
                prompt_id = str(body.get("prompt_id") or uuid.uuid4())
                answered = threading.Event()
                server.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2]), answered)
                try:
                    return self._json({"prompt_id": prompt_id, "number": number, "node_errors": valid[3]})
                finally:
                    answered.set()
            logging.warning("invalid prompt: {}".format(valid[1]))
            return self._json({"error": valid[1], "node_errors": valid[3]}, 400)

    return Handler


def _system_stats():
    device = comfy.model_management.get_torch_device()
    ram_total = comfy.model_management.get_total_memory(None)
    ram_free = comfy.model_management.get_free_memory(None)
    vram_total, torch_vram_total = comfy.model_management.get_total_memory(device, torch_total_too=True)
    vram_free, torch_vram_free = comfy.model_management.get_free_memory(device, torch_free_too=True)
    return {
        "system": {
            "os": os.name,
            "ram_total": ram_total,
            "ram_free": ram_free,
            "comfyui_version": comfyui_version.__version__,
            "required_frontend_version": "1.27.10",
            "python_version": sys.version,
            "pytorch_version": comfy.model_management.torch_version,
            "embedded_python": False,
            "argv": sys.argv,
        },
        "devices": [{
            "name": comfy.model_management.get_torch_device_name(device),
            "type": device.type,
            "index": device.index,
            "vram_total": vram_total,
            "vram_free": vram_free,
            "torch_vram_total": torch_vram_total,
            "torch_vram_free": torch_vram_free,
        }],
    }
