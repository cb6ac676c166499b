"""A loopback OpenAI-compatible chat-completions server for tests (real HTTP on 127.0.0.1).

Use::

    with FakeLlm(api_key="k") as llm:                      # Bearer k required (None: no check)
        llm.script("big-model", [json_reply({"a": 1}), rate_limited(retry_after="1")])
        llm.script(ANY_MODEL, [...])                       # for whichever model asks
        llm.respond(lambda request: json_reply(...))       # when nothing scripted is left
        client = OpenAICompatibleClient(llm.url, "k", {...})
        ...
        llm.chat_requests("big-model")                      # what the client sent, in order
        check_recorded_traffic(llm)                         # every body against the OpenAI spec

How a request is answered, first match wins:

1. the next scripted :class:`Answer` for the request's model (``script(model, answers)``),
2. the next one scripted for :data:`ANY_MODEL`,
3. the responder (``respond(fn)``): ``fn(request)`` returns an Answer, so an end-to-end
   test can tell the reasoning call from the cheap verification calls by
   ``request.model``, ``request.system_text`` or ``request.last_user_text``,
4. otherwise HTTP 400 "fake llm: nothing scripted for model X" (the client raises
   LlmRefused, so a missing script shows as a failure, never as a hang).

Answer builders: :func:`json_reply` (content = JSON text of the data), :func:`text_reply`
(content verbatim: malformed JSON, fenced JSON, prose), :func:`fenced_json_reply`,
:func:`truncated_reply` (``finish_reason: "length"``), :func:`refusal_reply`,
:func:`error_reply` (OpenAI envelope; ``vllm_code=True`` puts the HTTP status in ``code``
as an integer; ``flat=True`` gives vLLM's older unwrapped form), :func:`rate_limited`
(429 with ``Retry-After`` and/or ``retry-after-ms``), :func:`server_error`,
:func:`refuse_json_schema` (the 400 servers send when they do not support the
``json_schema`` response format), :func:`raw_reply` (any bytes with any status),
:func:`dropped` (connection closed without an answer), :func:`connection_reset` (a TCP
reset instead of an answer). Any answer can wait first:
``slow(answer, seconds)``.

Chat replies come in three shapes (``shape=``): ``"openai"`` (valid against
``CreateChatCompletionResponse``), ``"ollama"`` (no ``refusal`` and ``logprobs`` keys,
``fp_ollama``, small integer ids, ``finish_reason`` may be null) and ``"vllm"`` (a full
pydantic dump: nulls for unset fields, ``tool_calls: []``, ``stop_reason``, ``token_ids``,
``prompt_logprobs``, ``kv_transfer_params``).

``llm.chaos = RandomFaults(seed=..., rate=0.1)`` (:mod:`tests.support.chaos`) fails that
share of the chat requests at random (5xx, reset, stall past the client's timeout, 429),
before any script or responder is asked; off unless set. ``GET /models`` answers the scripted models
in the ``ListModelsResponse`` shape.

Every request is recorded as a :class:`RecordedRequest` with the answer it got;
:func:`check_recorded_traffic` validates each chat request body against
``CreateChatCompletionRequest`` and each OpenAI-shaped 200 reply against
``CreateChatCompletionResponse`` from ``reference/llm/openai-chat-completions-subset.json``
(Draft 2020-12, ``#/components/schemas`` moved to ``$defs`` as its SOURCES.md explains).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.support.chaos import LOST_REPLY, LoopbackHttpServer, RandomFaults, reset_connection
from tests.support.reference import load_json, reference_path

ANY_MODEL = "*"
SHAPES = ("openai", "ollama", "vllm")
CREATED = 1_790_000_000


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted HTTP answer. ``reply`` is a JSON value or raw bytes."""

    status: int = 200
    reply: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    reset: bool = False  # close with a TCP reset instead of answering
    shape: str = "openai"
    is_chat_completion: bool = False  # a 200 chat reply built by chat_reply()


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answer: Answer | None = None
    chaos: str = ""  # the random fault it got (see tests.support.chaos), "" for none

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def model(self) -> str | None:
        payload = self.json
        return payload.get("model") if isinstance(payload, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        payload = self.json
        return list(payload.get("messages", [])) if isinstance(payload, dict) else []

    @property
    def system_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "system")

    @property
    def last_user_text(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def response_format_type(self) -> str | None:
        payload = self.json
        if not isinstance(payload, dict) or "response_format" not in payload:
            return None
        return str(payload["response_format"].get("type"))


Responder = Callable[[RecordedRequest], Answer]


# -- answer builders -------------------------------------------------------------------------


def chat_reply(
    content: str | None,
    *,
    finish_reason: str | None = "stop",
    usage: tuple[int, int] | None = (120, 30),
    shape: str = "openai",
    model: str | None = None,
    refusal: str | None = None,
) -> Answer:
    """A 200 chat completion whose first choice carries ``content``. ``model`` None: the
    reply names the model the request asked for."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}")
    reply = {
        "content": content,
        "finish_reason": finish_reason,
        "usage": usage,
        "model": model,
        "refusal": refusal,
    }
    return Answer(200, reply, shape=shape, is_chat_completion=True)


def json_reply(data: Any, **options: Any) -> Answer:
    return chat_reply(json.dumps(data), **options)


def text_reply(text: str, **options: Any) -> Answer:
    return chat_reply(text, **options)


def fenced_json_reply(data: Any, **options: Any) -> Answer:
    return chat_reply(f"```json\n{json.dumps(data, indent=2)}\n```", **options)


def truncated_reply(text: str = '{"summary": "the change', **options: Any) -> Answer:
    return chat_reply(text, finish_reason="length", **options)


def refusal_reply(text: str = "I can't help with that.", **options: Any) -> Answer:
    return chat_reply(None, refusal=text, **options)


def error_reply(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    vllm_code: bool = False,
    flat: bool = False,
) -> Answer:
    inner: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "param": param,
        "code": status if vllm_code or flat else code,
    }
    reply = {"object": "error", **inner} if flat else {"error": inner}
    return Answer(status, reply, headers=dict(headers or {}))


def rate_limited(*, retry_after: str | None = None, retry_after_ms: str | None = None) -> Answer:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    return error_reply(
        429,
        "Rate limit reached for requests",
        error_type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )


def server_error(status: int = 500) -> Answer:
    return error_reply(
        status, "The server had an error while processing your request.", error_type="server_error"
    )


def refuse_json_schema() -> Answer:
    """What a server without structured outputs answers to ``type: json_schema``."""
    return error_reply(
        400,
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
        "this model.",
        param="response_format",
    )


def raw_reply(status: int, data: bytes, content_type: str = "application/json") -> Answer:
    return Answer(status, data, headers={"Content-Type": content_type})


def dropped() -> Answer:
    return Answer(drop=True)


def connection_reset() -> Answer:
    return Answer(reset=True)


def slow(answer: Answer, seconds: float) -> Answer:
    return replace(answer, delay=seconds)


# -- reply bodies in each server's shape ---------------------------------------------------------


def _chat_body(answer: Answer, request_model: str, serial: int) -> dict[str, Any]:
    spec = answer.reply
    model = spec["model"] or request_model
    usage = spec["usage"]
    message: dict[str, Any] = {"role": "assistant", "content": spec["content"]}
    choice: dict[str, Any] = {"index": 0, "message": message}
    body: dict[str, Any] = {
        "id": f"chatcmpl-{serial}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [choice],
    }
    if answer.shape == "openai":
        message["refusal"] = spec["refusal"]
        message["annotations"] = []
        choice["logprobs"] = None
        choice["finish_reason"] = spec["finish_reason"]
        body["id"] = f"chatcmpl-fake{serial:08d}"
        body["system_fingerprint"] = "fp_fake"
        body["service_tier"] = "default"
    elif answer.shape == "ollama":
        # Ollama: no refusal or logprobs keys, small non-unique ids, reasoning beside content.
        body["id"] = f"chatcmpl-{serial % 999}"
        body["system_fingerprint"] = "fp_ollama"
        choice["finish_reason"] = spec["finish_reason"]
        if spec["refusal"] is not None:
            message["refusal"] = spec["refusal"]
    else:
        # vLLM: a pydantic dump, unset optionals as null, extra keys beside the spec's.
        message.update(
            refusal=spec["refusal"],
            annotations=None,
            audio=None,
            function_call=None,
            tool_calls=[],
            reasoning_content=None,
        )
        choice.update(
            logprobs=None,
            finish_reason=spec["finish_reason"],
            stop_reason=None,
            token_ids=None,
        )
        body.update(
            service_tier=None,
            system_fingerprint=None,
            prompt_logprobs=None,
            prompt_token_ids=None,
            kv_transfer_params=None,
        )
    if usage is not None:
        prompt, completion = usage
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if answer.shape == "vllm":
            body["usage"]["prompt_tokens_details"] = None
    return body


# -- the server --------------------------------------------------------------------------------


class FakeLlm:
    """Threaded loopback server answering ``/v1/chat/completions`` and ``/v1/models``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Iterable[str] = (),
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        self.api_key = api_key
        # (cert, key): serve HTTPS with that certificate, e.g. one from a private CA.
        self.certificate = certificate
        self.requests: list[RecordedRequest] = []
        self.model_ids: list[str] = list(models)
        self._scripts: dict[str, deque[Answer]] = {}
        self._responder: Responder | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._serial = 0
        # Opt-in random faults on the chat requests, before any script or responder.
        self.chaos: RandomFaults | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeLlm:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body go out in two writes; Nagle plus delayed ACK would add ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: requests are recorded instead

            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

        self._server = LoopbackHttpServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.certificate)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeLlm:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API root, as ``AR_LLM_BASE_URL`` takes it."""
        assert self._server is not None, "server not started"
        scheme = "https" if self.certificate is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- scripting -------------------------------------------------------------------------

    def script(self, model: str, answers: Iterable[Answer]) -> None:
        """Queue answers for requests naming ``model`` (or any model: :data:`ANY_MODEL`)."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(answers)
            if model != ANY_MODEL and model not in self.model_ids:
                self.model_ids.append(model)

    def respond(self, responder: Responder | None) -> None:
        """Answer whatever nothing scripted covers by calling ``responder(request)``."""
        with self._lock:
            self._responder = responder

    def pending(self) -> dict[str, int]:
        """Scripted answers not yet used, by model."""
        with self._lock:
            return {model: len(queue) for model, queue in self._scripts.items() if queue}

    def chat_requests(self, model: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.endswith("/chat/completions") and (model is None or r.model == model)
            ]

    # -- serving ---------------------------------------------------------------------------

    def _choose(self, request: RecordedRequest) -> Answer:
        if self.api_key is not None:
            presented = request.headers.get("authorization", "")
            if presented != f"Bearer {self.api_key}":
                # Like a careless server, echo what was presented: the client must not.
                return error_reply(
                    401, f"Incorrect API key provided: {presented}", code="invalid_api_key"
                )
        if request.method == "GET" and request.path.endswith("/models"):
            with self._lock:
                ids = list(self.model_ids)
            data = [
                {"id": i, "object": "model", "created": CREATED, "owned_by": "fake"} for i in ids
            ]
            return Answer(200, {"object": "list", "data": data})
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return error_reply(404, "fake llm: no such route", error_type="not_found_error")
        try:
            model = request.model or ""
        except ValueError:
            return error_reply(400, "fake llm: body is not JSON")
        with self._lock:
            for key in (model, ANY_MODEL):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
            responder = self._responder
        if responder is not None:
            return responder(request)
        return error_reply(400, f"fake llm: nothing scripted for model {model!r}")

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = RecordedRequest(
            method=handler.command,
            path=handler.path.split("?", 1)[0],
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=handler.rfile.read(length) if length else b"",
        )
        with self._lock:
            self.requests.append(request)
            self._serial += 1
            serial = self._serial
        try:
            answer = self._chaos_answer(request) or self._choose(request)
        except Exception as exc:  # a bug in a responder must show, not hang the client
            answer = error_reply(400, f"fake llm responder failed: {exc!r}")
        request.answer = answer
        if answer.delay:
            time.sleep(answer.delay)
        if answer.reset:
            reset_connection(handler)
            return
        if answer.drop:
            handler.close_connection = True
            return
        if answer.is_chat_completion:
            data = json.dumps(_chat_body(answer, request.model or "", serial)).encode()
        elif isinstance(answer.reply, bytes):
            data = answer.reply
        else:
            data = json.dumps(answer.reply).encode()
        try:
            handler.send_response(answer.status)
            if "Content-Type" not in answer.headers:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout test)

    def _chaos_answer(self, request: RecordedRequest) -> Answer | None:
        """A fault in place of the answer when the random faults pick this chat request."""
        if self.chaos is None or not request.path.endswith("/chat/completions"):
            return None
        kind = self.chaos.draw(request.method)
        if kind is None:
            return None
        request.chaos = kind
        if kind == "reset":
            return connection_reset()
        if kind == LOST_REPLY:
            raise ValueError("the LLM fake has no state a lost reply could leave behind")
        if kind == "timeout":  # the client gives up first; then the connection closes
            return Answer(delay=self.chaos.stall_seconds, drop=True)
        if kind == "429":
            return rate_limited(retry_after=self.chaos.retry_after)
        return server_error(self.chaos.error_status())

    def response_body(self, request: RecordedRequest) -> Any:
        """The JSON body the fake sent for ``request`` (rebuilt; ids follow request order)."""
        answer = request.answer
        assert answer is not None
        if answer.is_chat_completion:
            serial = self.requests.index(request) + 1
            return _chat_body(answer, request.model or "", serial)
        return answer.reply


# -- conformance against the OpenAI description ------------------------------------------------


@cache
def _spec_document() -> dict[str, Any]:
    spec = load_json(reference_path("llm", "openai-chat-completions-subset.json"))
    assert isinstance(spec, dict)
    schemas = json.loads(
        json.dumps(spec["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": schemas}
    Draft202012Validator.check_schema(document)
    return document


@cache
def spec_validator(definition: str) -> Draft202012Validator:
    """A validator for one schema of the reference OpenAI description."""
    document = _spec_document()
    if definition not in document["$defs"]:
        raise KeyError(f"{definition} is not in the reference subset")
    return Draft202012Validator({**document, "$ref": f"#/$defs/{definition}"})


def spec_problems(definition: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
        for e in spec_validator(definition).iter_errors(instance)
    ]


def check_recorded_traffic(fake: FakeLlm) -> int:
    """Validate every chat request body, and every OpenAI-shaped chat reply, against the
    reference description; raise AssertionError listing the problems. Returns how many
    documents were checked (so a test can assert the check saw traffic)."""
    problems: list[str] = []
    checked = 0
    for number, request in enumerate(fake.chat_requests(), start=1):
        checked += 1
        for problem in spec_problems("CreateChatCompletionRequest", request.json):
            problems.append(f"request {number}: {problem}")
        answer = request.answer
        if answer is not None and answer.is_chat_completion and answer.shape == "openai":
            checked += 1
            body = fake.response_body(request)
            for problem in spec_problems("CreateChatCompletionResponse", body):
                problems.append(f"reply {number}: {problem}")
    if problems:
        raise AssertionError(
            "traffic does not conform to the OpenAI description:\n" + "\n".join(problems)
        )
    return checked
