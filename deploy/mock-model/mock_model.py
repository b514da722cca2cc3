"""A minimal OpenAI-compatible Chat Completions server for trying clawgate
without an API key (the `mock` profile of docker-compose.yml).

It is a stand-in, not a model: it echoes the last user message back, one word
per streamed chunk, in the OpenAI server-sent-events format
(`data: {chat.completion.chunk}` ... `data: [DONE]`, with a usage chunk when
the request asks for `stream_options.include_usage`). Non-streaming requests
get one `chat.completion` object. Standard library only.

Environment: MOCK_MODEL_PORT (default 8000), MOCK_MODEL_DELAY_MS (pause before
each chunk, default 30).
"""

import json
import os
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("MOCK_MODEL_PORT", "8000"))
DELAY = int(os.environ.get("MOCK_MODEL_DELAY_MS", "30")) / 1000.0


def reply_words(body):
    """The words of the last user message (or a fixed line when there is none)."""
    text = ""
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content or ""
    words = text.split() or ["(mock", "model:", "no", "user", "message)"]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def chunk(cid, model, delta, finish=None):
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("mock-model: " + (fmt % args) + "\n")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self.send_json(200, {"status": "ok"})
        elif self.path.rstrip("/") in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "mock", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            self.send_json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        model = body.get("model") or "mock"
        cid = "chatcmpl-" + uuid.uuid4().hex
        words = reply_words(body)
        if not body.get("stream"):
            self.send_json(200, {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words)},
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 0, "completion_tokens": len(words), "total_tokens": len(words)},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        events = [chunk(cid, model, {"role": "assistant", "content": ""})]
        events += [chunk(cid, model, {"content": w}) for w in words]
        events.append(chunk(cid, model, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = chunk(cid, model, {})
            usage["choices"] = []
            usage["usage"] = {"prompt_tokens": 0, "completion_tokens": len(words), "total_tokens": len(words)}
            events.append(usage)
        try:
            for event in events:
                time.sleep(DELAY)
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (an aborted run)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"mock-model: listening on :{PORT}\n")
    server.serve_forever()
