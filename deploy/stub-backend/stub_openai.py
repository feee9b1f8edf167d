#!/usr/bin/env python3
"""A stand-in for an OpenAI-compatible inference server, for deploy/compose.yaml. It is NOT a model.

It serves the two paths grid-worker's `openai` backend uses:
  GET  /v1/models             one model, "stub:echo" (family "stub")
  POST /v1/chat/completions   answers at once, without streaming (grid-worker accepts one chat.completion body),
                              with "stub:echo heard: " and the last user message; usage counts words
and GET /health for the container's health check. Python's standard library only.

    python3 stub_openai.py [--port 8000] [--model stub:echo]
"""
import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--model", default="stub:echo")
    options = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/v1/models":
                self.answer(200, {"object": "list", "data": [{"id": options.model, "object": "model", "owned_by": "stub"}]})
            elif self.path == "/health":
                self.answer(200, {"status": "ok"})
            else:
                self.answer(404, {"error": {"message": f"no such path: {self.path}", "type": "not_found"}})

        def do_POST(self):
            if self.path != "/v1/chat/completions":
                self.answer(404, {"error": {"message": f"no such path: {self.path}", "type": "not_found"}})
                return
            try:
                request = json.loads(self.body() or b"{}")
            except ValueError:
                self.answer(400, {"error": {"message": "the body is not JSON", "type": "invalid_request_error"}})
                return
            messages = request.get("messages") or []
            user = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            heard = user[-1] if user and isinstance(user[-1], str) else ""
            reply = f"{options.model} heard: {heard}"
            prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
            self.answer(200, {
                "id": f"chatcmpl-stub-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model") or options.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(reply.split()),
                          "total_tokens": prompt_words + len(reply.split())},
            })

        def body(self):
            # .NET's HttpClient sends JSON bodies chunked (no Content-Length); http.server does not decode that itself.
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline().strip():  # trailers, up to the blank line
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()  # the CRLF after each chunk
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # one line per request on stdout, as servers in containers log
            print(f"{self.address_string()} {format % args}", flush=True)

    # As a container's PID 1 the process gets no default action for SIGTERM: exit on it (docker stop).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer((options.host, options.port), Handler)
    print(f"stub OpenAI-compatible server on {options.host}:{options.port}, model {options.model}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
