"""A local OpenAI-compatible provider for tests: a real HTTP server, so worker processes can use it.

`POST /v1/chat/completions` and `POST /v1/responses` (OpenAI's Responses API) answer the
Paperboy schemas deterministically from the JSON block in the user message, with realistic
`usage`; `GET /v1/models` lists the one model. It can play a reasoning model: one that spends
`thinking_tokens` of its budget before it answers (an answer cut short by the budget is empty,
with `finish_reason` `length`), and one that answers only in `reasoning_content`. It can
be slow (`latency`), take a random while of up to `transit` seconds to "receive" a request (a
network's varying delay before the provider counts it), enforce its own requests-per-window limit (429 with `Retry-After`, counted
in `refused`), require an API key, play a script of failures (`fail_next`), and put a NUL inside
every text it writes (`nul`), as a real model's output now and then carries one. Every request
is logged. Run it in-process (`with FakeOpenAI() as fake: ... fake.url`) or on its own:

    python -m tests.fake_openai --port 8011 --rpm 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from paperboy_worker.llm.prompts import ANALYSIS, HIGHLIGHTS, NEWS_ANALYSIS, RANKING

_JSON_BLOCK = re.compile(r"```json\s*\n(.*?)\n```", re.DOTALL)
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


class Failure(StrEnum):
    """What a scripted answer does instead of answering."""

    SERVER_ERROR = "server_error"  # 500
    UNAVAILABLE = "unavailable"  # 503 with Retry-After
    RATE_LIMITED = "rate_limited"  # 429 with Retry-After, whatever the limit says
    QUOTA = "quota"  # 429 insufficient_quota
    CONTEXT_LENGTH = "context_length"  # 400 context_length_exceeded
    BAD_REQUEST = "bad_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403
    INVALID_JSON = "invalid_json"  # 200, content is not JSON
    SCHEMA_MISMATCH = "schema_mismatch"  # 200, JSON of the wrong shape
    REFUSAL = "refusal"  # 200, message.refusal set
    EMPTY = "empty"  # 200, empty content
    HANG = "hang"  # answers after `hang_seconds`, past any sensible client timeout


_ERRORS: dict[Failure, tuple[int, str, str | None]] = {
    Failure.SERVER_ERROR: (500, "The server had an error processing your request.", None),
    Failure.UNAVAILABLE: (503, "The engine is currently overloaded.", None),
    Failure.RATE_LIMITED: (429, "Rate limit reached for requests.", "rate_limit_exceeded"),
    Failure.QUOTA: (429, "You exceeded your current quota.", "insufficient_quota"),
    Failure.CONTEXT_LENGTH: (
        400,
        "This model's maximum context length is 128000 tokens.",
        "context_length_exceeded",
    ),
    Failure.BAD_REQUEST: (400, "Invalid schema for response_format.", "invalid_request"),
    Failure.UNAUTHORIZED: (401, "Incorrect API key provided.", "invalid_api_key"),
    Failure.FORBIDDEN: (403, "You are not allowed to use this model.", None),
}


@dataclass
class LoggedRequest:
    at: float  # time.monotonic() when it arrived
    path: str
    schema: str | None
    body: dict[str, Any]
    status: int = 0


@dataclass
class Reply:
    status: int
    payload: Any
    retry_after: float | None = None


class FakeOpenAI:
    """The provider's state; `start()` serves it on 127.0.0.1 at a free port (or `port`)."""

    def __init__(
        self,
        *,
        model: str = "fake-model",
        api_key: str | None = None,
        latency: float = 0.0,
        transit: float = 0.0,
        rpm: int | None = None,
        window: float = 60.0,
        retry_after: float | None = None,
        hang_seconds: float = 5.0,
        nul: bool = False,
        port: int = 0,
        thinking_tokens: int = 0,
        reasoning_only: bool = False,
    ) -> None:
        self.model = model
        self.thinking_tokens = thinking_tokens  # spent from the budget before the answer
        self.reasoning_only = reasoning_only  # chat: the answer in `reasoning_content` only
        self.api_key = api_key
        self.latency = latency
        self.transit = transit
        self.rpm = rpm
        self.window = window
        self.retry_after = retry_after  # what scripted 429/503 answers ask for; None: computed
        self.hang_seconds = hang_seconds
        self.nul = nul
        self.port = port
        self.requests: list[LoggedRequest] = []
        self.refused = 0  # 429s the rate limit answered (scripted ones not included)
        self.completions = 0  # 200s with a completion
        self.prompt_tokens = 0  # the usage every chat completion reported, summed
        self.completion_tokens = 0
        self.lock = threading.Lock()
        self._script: deque[Failure] = deque()
        self._admitted: deque[float] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a client is given (`OPENAI_BASE_URL`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, *failures: Failure | str, times: int = 1) -> None:
        """The next answers: each failure `times` times, in order; then normal answers again."""
        with self.lock:
            self._script.extend(Failure(f) for f in failures for _ in range(times))

    def completions_for(self, schema: str) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.requests if r.schema == schema and r.status == 200]

    def start(self) -> FakeOpenAI:
        server = _QuietServer(("127.0.0.1", self.port), _handler(self))
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # What to answer; called from the server's threads.

    def respond(self, method: str, path: str, authorization: str | None, raw: bytes) -> Reply:
        route = (method, path.rstrip("/"))
        if route not in (("GET", "/v1/models"), ("POST", CHAT), ("POST", RESPONSES)):
            return Reply(404, _error("Not found", "not_found"))
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return Reply(401, _error("Incorrect API key provided.", "invalid_api_key"))
        if method == "GET":
            model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
            return Reply(200, {"object": "list", "data": [model]})
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return Reply(400, _error("We could not parse the JSON body.", "invalid_json"))
        if self.transit:
            time.sleep(random.uniform(0, self.transit))
        logged = LoggedRequest(time.monotonic(), path, _schema_name(body), body)
        reply = self._complete(logged)
        logged.status = reply.status
        return reply

    def _complete(self, logged: LoggedRequest) -> Reply:
        wait = self.admit(logged)
        if wait is not None:
            message = "Rate limit reached for requests per minute."
            return Reply(429, _error(message, "rate_limit_exceeded"), retry_after=wait)
        if self.latency:
            time.sleep(self.latency)
        failure = self.next_failure()
        if failure is Failure.HANG:
            time.sleep(self.hang_seconds)
        if failure in _ERRORS:
            status, message, code = _ERRORS[failure]
            retry = self.retry_after if status in (429, 503) else None
            return Reply(status, _error(message, code), retry_after=retry)
        if logged.path.rstrip("/") == RESPONSES:
            return Reply(200, self.response(logged.body, failure))
        return Reply(200, self.answer(logged.body, failure))

    def admit(self, logged: LoggedRequest) -> float | None:
        """Log the request; None when the limit admits it, else the seconds until it would."""
        with self.lock:
            self.requests.append(logged)
            if self.rpm is None:
                return None
            # Read the clock under the lock: arrivals then enter the log in time order, which
            # the trim below relies on (handler threads race between parsing and this point).
            now = time.monotonic()
            while self._admitted and self._admitted[0] <= now - self.window:
                self._admitted.popleft()
            if len(self._admitted) >= self.rpm:
                self.refused += 1
                return self._admitted[0] + self.window - now
            self._admitted.append(now)
            return None

    def next_failure(self) -> Failure | None:
        with self.lock:
            return self._script.popleft() if self._script else None

    def answer(self, body: dict[str, Any], failure: Failure | None) -> dict[str, Any]:
        """A chat completion."""
        content, refusal, number = self._content(body, failure)
        budget = body.get("max_tokens") or body.get("max_completion_tokens")
        completion_tokens, cut = self._spent(content or refusal or "", budget)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
        if cut:
            message["content"] = ""
        elif self.reasoning_only and content:
            message["content"] = ""
            message["reasoning_content"] = f"The reader wants this. Answer: {content}"
        prompt_tokens = max(1, math.ceil(len(json.dumps(body.get("messages", []))) / 4))
        with self.lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "length" if cut else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def response(self, body: dict[str, Any], failure: Failure | None) -> dict[str, Any]:
        """A Responses API answer."""
        content, refusal, number = self._content(body, failure)
        completion_tokens, cut = self._spent(
            content or refusal or "", body.get("max_output_tokens")
        )
        part: dict[str, Any] = (
            {"type": "refusal", "refusal": refusal}
            if refusal
            else {"type": "output_text", "text": content or "", "annotations": []}
        )
        message = {
            "type": "message",
            "id": f"msg_fake_{number}",
            "status": "incomplete" if cut else "completed",
            "role": "assistant",
            "content": [] if cut else [part],
        }
        prompt_text = f"{body.get('instructions', '')}{json.dumps(body.get('input', ''))}"
        prompt_tokens = max(1, math.ceil(len(prompt_text) / 4))
        return {
            "id": f"resp_fake_{number}",
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model", self.model),
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "output": [message],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion_tokens,
                "output_tokens_details": {"reasoning_tokens": self.thinking_tokens},
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _content(
        self, body: dict[str, Any], failure: Failure | None
    ) -> tuple[str | None, str | None, int]:
        """The answer's text (or refusal) for `failure`, and this completion's number."""
        if failure is Failure.INVALID_JSON:
            content: str | None = '{"picks": [ this is not json'
        elif failure is Failure.SCHEMA_MISMATCH:
            content = json.dumps({"unexpected": True})
        elif failure in (Failure.REFUSAL, Failure.EMPTY):
            content = None if failure is Failure.REFUSAL else ""
        else:
            valid = _valid_answer(_schema_name(body), _data_block(body))
            content = json.dumps(_with_nul(valid) if self.nul else valid)
        refusal = "I can't help with that." if failure is Failure.REFUSAL else None
        with self.lock:
            self.completions += 1
            return content, refusal, self.completions

    def _spent(self, text: str, budget: Any) -> tuple[int, bool]:
        """Completion tokens used, and whether the budget ran out before the answer ended."""
        needed = self.thinking_tokens + max(1, math.ceil(len(text) / 4))
        if isinstance(budget, int) and budget < needed:
            return budget, True
        return needed, False


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is part of the script, not an error


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._send(fake.respond("GET", self.path, self.headers.get("Authorization"), b""))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._send(fake.respond("POST", self.path, self.headers.get("Authorization"), raw))

        def _send(self, reply: Reply) -> None:
            data = json.dumps(reply.payload).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if reply.retry_after is not None:
                self.send_header("Retry-After", str(max(1, math.ceil(reply.retry_after))))
                self.send_header("Retry-After-Ms", str(max(1, math.ceil(reply.retry_after * 1000))))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _error(message: str, code: str | None) -> dict[str, Any]:
    kind = "invalid_request_error" if code != "rate_limit_exceeded" else "requests"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _schema_name(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format") or {}
    name = (response_format.get("json_schema") or {}).get("name")
    if name is None:  # the Responses API's form
        name = ((body.get("text") or {}).get("format") or {}).get("name")
    return name if isinstance(name, str) else None


def _data_block(body: dict[str, Any]) -> dict[str, Any]:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    text = users[-1].get("content", "") if users else body.get("input", "")
    found = _JSON_BLOCK.search(str(text))
    data = json.loads(found.group(1)) if found else {}
    return data if isinstance(data, dict) else {}


def _valid_answer(schema: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """Deterministic answers: the first `top_n` candidates in the order given, texts made from
    titles, two highlight bullets."""
    reader = (data.get("reader") or {}).get("name", "you")
    if schema == RANKING:
        candidates = data.get("candidates", [])[: int(data.get("top_n", 5))]
        picks = [
            {
                "id": c["id"],
                "relevance": round(0.95 - 0.05 * i, 2),
                "reason": f"Relevant to {reader}: {c['title'][:60]}",
            }
            for i, c in enumerate(candidates)
        ]
        return {"picks": picks}
    if schema in (ANALYSIS, NEWS_ANALYSIS):
        title = (data.get("item") or {}).get("title", "this item")
        analysis = {
            "summary": f"Summary of {title}.",
            "why_it_matters": f"{title} relates to what {reader} works on.",
            "key_takeaway": f"The key takeaway of {title}.",
        }
        if schema == NEWS_ANALYSIS:
            analysis["action_item"] = f"Follow up on {title}."
        return analysis
    if schema == HIGHLIGHTS:
        picks = data.get("picks", [])
        first = picks[0] if picks else {"title": "nothing", "kind": "paper"}
        return {
            "highlights": [
                {"title": "Today", "insight": f"{len(picks)} picks today.", "type": "trend"},
                {
                    "title": str(first.get("title", ""))[:60],
                    "insight": f"Start with {first.get('title', '')}.",
                    "type": first.get("kind", "paper"),
                },
            ]
        }
    return {}


def _with_nul(value: Any, key: str | None = None) -> Any:
    """`value` with a NUL after the first word of every text in it; ids are left whole, since an
    id the model mangled is another failure (an unknown pick)."""
    if isinstance(value, dict):
        return {name: _with_nul(inner, name) for name, inner in value.items()}
    if isinstance(value, list):
        return [_with_nul(inner, key) for inner in value]
    if isinstance(value, str) and key != "id":
        return value.replace(" ", "\u0000 ", 1)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--rpm", type=int, default=None)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--thinking-tokens", type=int, default=0)
    parser.add_argument("--reasoning-only", action="store_true")
    options = parser.parse_args()
    fake = FakeOpenAI(
        port=options.port,
        rpm=options.rpm,
        window=options.window,
        latency=options.latency,
        api_key=options.api_key,
        thinking_tokens=options.thinking_tokens,
        reasoning_only=options.reasoning_only,
    )
    with fake:
        print(f"fake OpenAI at {fake.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
