"""Scripted stand-ins for the model APIs the real agent CLIs call, on 127.0.0.1.

Each server plays a *script*: a list of steps, each either a tool call the model asks for
(``Call(name, input)``) or the model's final text (``Say(text)``). The step to play is the
number of tool results the agent has already sent back in this conversation, so the agent
runs the calls in order and then finishes. Requests that are not the main conversation
(titles, summaries: no tools offered) get a short text. Every request body is kept in
``requests`` so a test can read what the model was told (a hook's deny reason, a tool's
output).

- Anthropic Messages (``POST /v1/messages``, SSE when ``stream``): Claude Code.
- OpenAI Responses (``POST /v1/responses``, SSE): Codex CLI.
- Gemini ``generateContent`` / ``streamGenerateContent`` (``?alt=sse``): Gemini CLI.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    name: str
    input: dict
    id: str = field(default_factory=lambda: "toolu_" + uuid.uuid4().hex[:20])
    before: threading.Event | None = None  # played only once this is set (a test's gate)


@dataclass
class Say:
    text: str


class FakeModel:
    """A fake model API server; use as a context manager, read ``url``."""

    def __init__(self, script: list, kind: str, subs: dict | None = None):
        self.script = list(script)
        # sub-agents' conversations (Anthropic): {marker: script}, played for a conversation
        # whose first user message holds the marker (the prompt the orchestrator gave it)
        self.subs = {marker: list(steps) for marker, steps in (subs or {}).items()}
        self.kind = kind
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def step_for(self, done: int, script: list | None = None):
        script = self.script if script is None else script
        step = script[done] if done < len(script) else Say("done")
        if isinstance(step, Call) and step.before is not None:
            step.before.wait(90)
        return step

    def script_for(self, messages: list) -> list:
        first = next((m for m in messages if m.get("role") == "user"), None)
        text = json.dumps(first.get("content")) if first else ""
        for marker, steps in self.subs.items():
            if marker in text:
                return steps
        return self.script

    # what the model was told, as plain text, across every request
    def told(self) -> str:
        with self.lock:
            return "\n".join(json.dumps(r, ensure_ascii=False) for r in self.requests)


def _make_handler(model: FakeModel):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {}

        def _send(self, status: int, body: bytes, ctype: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _sse(self, events: list[tuple[str | None, dict]]):
            chunks = []
            for name, data in events:
                head = f"event: {name}\n" if name else ""
                chunks.append(f"{head}data: {json.dumps(data)}\n\n")
            self._send(200, "".join(chunks).encode(), "text/event-stream")

        def do_GET(self):
            self._send(200, b'{"data": [], "models": []}')

        def do_HEAD(self):
            self._send(200, b"")

        def do_POST(self):
            body = self._body()
            with model.lock:
                model.requests.append({"path": self.path, "body": body})
            path = self.path.split("?")[0]
            if model.kind == "anthropic" and path.endswith("/messages"):
                return _anthropic(self, model, body)
            if model.kind == "anthropic" and path.endswith("/count_tokens"):
                return self._send(200, b'{"input_tokens": 10}')
            if model.kind == "openai" and path.endswith("/responses"):
                return _openai(self, model, body)
            if model.kind == "gemini" and (":generateContent" in path or ":streamGenerateContent" in path):
                return _gemini(self, model, body, stream=":streamGenerateContent" in path)
            if model.kind == "gemini" and ":countTokens" in path:
                return self._send(200, b'{"totalTokens": 10}')
            self._send(404, b'{"error": {"message": "not here"}}')

    return Handler


# --- Anthropic Messages ---

def _anthropic(h, model: FakeModel, body: dict):
    messages = body.get("messages") or []
    if not body.get("tools"):
        step: Call | Say = Say("ok")
    else:
        done = sum(1 for m in messages if m.get("role") == "user" and isinstance(m.get("content"), list)
                   for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result")
        step = model.step_for(done, model.script_for(messages))
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    if isinstance(step, Call):
        block = {"type": "tool_use", "id": step.id, "name": step.name, "input": step.input}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": step.text}
        stop = "end_turn"
    message = {"id": "msg_" + uuid.uuid4().hex[:16], "type": "message", "role": "assistant",
               "model": body.get("model") or "claude-fake", "content": [block], "stop_reason": stop,
               "stop_sequence": None, "usage": usage}
    if not body.get("stream"):
        return h._send(200, json.dumps(message).encode())
    start = dict(message, content=[], stop_reason=None)
    events: list[tuple[str | None, dict]] = [("message_start", {"type": "message_start", "message": start})]
    if isinstance(step, Call):
        events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "tool_use", "id": step.id,
                                                                 "name": step.name, "input": {}}}))
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "input_json_delta",
                                                         "partial_json": json.dumps(step.input)}}))
    else:
        events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}}))
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": step.text}}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 5}}))
    events.append(("message_stop", {"type": "message_stop"}))
    h._sse(events)


# --- OpenAI Responses ---

SPAWNED = "$spawned"  # in a Call's input: the agent id spawn_agent answered (Codex's sub-agents)


def _openai_script(model: FakeModel, items: list) -> list:
    """A sub-agent's script when one of the conversation's user messages holds its marker (a
    Codex sub-agent's conversation starts with its context, then the task it was given)."""
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            text = json.dumps(item.get("content"))
            for marker, steps in model.subs.items():
                if marker in text:
                    return steps
    return model.script


def _spawned_id(items: list) -> str:
    for item in items:
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            try:
                found = json.loads(text)
            except ValueError:
                continue
            if isinstance(found, dict) and isinstance(found.get("agent_id"), str):
                return found["agent_id"]
    return "unknown"


def _openai(h, model: FakeModel, body: dict):
    items = body.get("input") or []
    done = sum(1 for i in items if isinstance(i, dict) and i.get("type") in ("function_call_output",
                                                                             "custom_tool_call_output"))
    step = model.step_for(done, _openai_script(model, items)) if body.get("tools") else Say("ok")
    rid = "resp_" + uuid.uuid4().hex[:16]
    if isinstance(step, Call):
        arguments = json.dumps(step.input)
        if SPAWNED in arguments:  # the id of the agent the conversation's spawn_agent call started
            arguments = arguments.replace(SPAWNED, _spawned_id(items))
        item = {"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:12], "call_id": step.id,
                "name": step.name, "arguments": arguments, "status": "completed"}
        if step.name.startswith("multi_agent_v1__"):  # Codex's sub-agent tools: a namespace too
            item.update(namespace="multi_agent_v1", name=step.name.split("__", 1)[1])
        elif step.name.startswith("mcp__") and step.name.count("__") >= 2:
            # Codex offers an MCP server's tools as a namespace (`mcp__demo`) of functions (`add`)
            namespace, _, name = step.name.rpartition("__")
            item.update(namespace=namespace, name=name)
    else:
        item = {"type": "message", "id": "msg_" + uuid.uuid4().hex[:12], "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}]}
    response = {"id": rid, "object": "response", "status": "completed", "model": body.get("model") or "gpt-fake",
                "output": [item], "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                                            "input_tokens_details": {"cached_tokens": 0},
                                            "output_tokens_details": {"reasoning_tokens": 0}}}
    if not body.get("stream"):
        return h._send(200, json.dumps(response).encode())
    events: list[tuple[str | None, dict]] = [
        ("response.created", {"type": "response.created", "response": dict(response, status="in_progress", output=[])}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "response": response}),
    ]
    h._sse(events)


# --- Gemini generateContent ---

def _gemini(h, model: FakeModel, body: dict, stream: bool):
    contents = body.get("contents") or []
    done = sum(1 for c in contents for p in (c.get("parts") or []) if isinstance(p, dict) and "functionResponse" in p)
    step = model.step_for(done) if body.get("tools") else Say("ok")
    if isinstance(step, Call):
        part = {"functionCall": {"name": step.name, "args": step.input, "id": step.id}}
    else:
        part = {"text": step.text}
    response = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
                "modelVersion": "gemini-fake"}
    if not stream:
        return h._send(200, json.dumps(response).encode())
    h._sse([(None, response)])
