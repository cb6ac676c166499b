"""Readiness probe: forge pings, LLM GET /models over real loopback HTTP (through the LLM
transport: size cap, key in a Secret), caching."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from auto_review.core.refs import HostKind
from auto_review.core.secrets import Secret
from auto_review.gateway.readiness import ReadinessProbe
from auto_review.hosts.base import ForgeProbe, HostAuthError, HostUnavailable
from auto_review.llm.transport import MAX_RESPONSE_BYTES, models_probe

LLM_KEY = "llm-key-canary-0123456789abcdefghijklmnop"


class ScriptedHost(ForgeProbe):
    """A forge whose ping result the test sets; counts pings."""

    kind = HostKind.FORGEJO

    def __init__(self, failure: Exception | None = None, delay: float = 0.0) -> None:
        self.failure = failure
        self.delay = delay
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure


class LlmServer:
    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"object":"list","data":[{"id":"m","object":"model"}]}'
        self.endless = False  # a chunked body that never ends
        self.sent = 0
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                if outer.endless:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while outer.sent < 8 * MAX_RESPONSE_BYTES:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            outer.sent += len(chunk)
                    except OSError:
                        pass  # the client hung up: what the cap is for
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm() -> Iterator[LlmServer]:
    server = LlmServer()
    yield server
    server.close()


def probe_for(hosts, llm_url, *, cache=10.0, key=LLM_KEY):
    async def make_and_report(times: int = 1):
        llm = models_probe(llm_url, Secret(key), timeout=2.0) if llm_url else None
        probe = ReadinessProbe(hosts, llm=llm, cache_seconds=cache, timeout_seconds=2.0)
        try:
            return [await probe.report() for _ in range(times)]
        finally:
            if llm is not None:
                await llm.aclose()

    return make_and_report


def forge_only_probe(host: ScriptedHost, *, timeout_seconds: float) -> ReadinessProbe:
    """A probe of one Forgejo host, with no LLM and its cache turned off."""
    return ReadinessProbe(
        {HostKind.FORGEJO: host},
        llm=None,
        cache_seconds=0,
        timeout_seconds=timeout_seconds,
    )


def test_all_reachable_is_ready_and_llm_sees_bearer_key(llm: LlmServer) -> None:
    host = ScriptedHost()
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: host}, llm.url)())
    assert report.ready
    assert report.checks == {"forgejo": "ok", "llm": "ok"}
    assert llm.requests == [("/v1/models", f"Bearer {LLM_KEY}")]


def test_forge_down_makes_it_unready_with_a_fixed_word(llm: LlmServer) -> None:
    host = ScriptedHost(HostUnavailable("ping", "connection refused to http://user:pw@x"))
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: host}, llm.url)())
    assert not report.ready
    assert report.checks["forgejo"] == "unreachable"
    assert "pw" not in str(report.as_dict())


def test_forge_auth_failure_is_named(llm: LlmServer) -> None:
    host = ScriptedHost(HostAuthError("ping", "401"))
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: host}, llm.url)())
    assert report.checks["forgejo"] == "auth-failed"
    assert not report.ready


def test_llm_refusing_the_key_and_llm_down(llm: LlmServer) -> None:
    llm.status = 401
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, llm.url)())
    assert report.checks["llm"] == "auth-failed" and not report.ready
    llm.status = 503
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, llm.url)())
    assert report.checks["llm"] == "unreachable" and not report.ready


def test_llm_connection_refused_is_unreachable() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    [report] = asyncio.run(
        probe_for({HostKind.FORGEJO: ScriptedHost()}, f"http://127.0.0.1:{port}/v1")()
    )
    assert report.checks["llm"] == "unreachable"
    assert not report.ready


def test_llm_not_configured_does_not_block_readiness() -> None:
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, None)())
    assert report.ready
    assert report.checks["llm"] == "not-configured"


def test_no_forge_configured_is_not_ready() -> None:
    [report] = asyncio.run(probe_for({}, None)())
    assert not report.ready
    assert report.checks["forge"] == "not-configured"


def test_results_are_cached(llm: LlmServer) -> None:
    host = ScriptedHost()
    reports = asyncio.run(probe_for({HostKind.FORGEJO: host}, llm.url, cache=60)(times=5))
    assert host.pings == 1 and len(llm.requests) == 1
    assert all(r is reports[0] for r in reports)


def test_zero_cache_probes_every_time(llm: LlmServer) -> None:
    host = ScriptedHost()
    asyncio.run(probe_for({HostKind.FORGEJO: host}, llm.url, cache=0)(times=3))
    assert host.pings == 3


def test_concurrent_callers_share_one_probe() -> None:
    host = ScriptedHost(delay=0.2)

    async def scenario() -> list[object]:
        probe = forge_only_probe(host, timeout_seconds=2.0)
        return list(await asyncio.gather(*(probe.report() for _ in range(20))))

    reports = asyncio.run(scenario())
    assert host.pings == 1
    assert all(r.ready for r in reports)


def test_a_hanging_forge_times_out_as_unreachable() -> None:
    host = ScriptedHost(delay=5.0)

    async def scenario():
        probe = forge_only_probe(host, timeout_seconds=0.2)
        return await probe.report()

    report = asyncio.run(scenario())
    assert report.checks["forgejo"] == "unreachable"


def test_the_llm_key_is_held_in_a_secret_not_in_the_probe(llm: LlmServer) -> None:
    transport = models_probe(llm.url, Secret(LLM_KEY), timeout=2.0)
    probe = ReadinessProbe({}, llm=transport, cache_seconds=0, timeout_seconds=2.0)
    assert isinstance(transport._api_key, Secret)
    for text in (repr(vars(transport)), repr(transport), repr(vars(probe))):
        assert LLM_KEY not in text
    asyncio.run(transport.aclose())


def test_an_endless_llm_answer_is_cut_at_the_cap(llm: LlmServer) -> None:
    llm.endless = True
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, llm.url)())
    assert report.checks["llm"] == "unreachable" and not report.ready
    assert llm.sent < 4 * MAX_RESPONSE_BYTES  # reading stopped near the cap


def test_an_llm_200_that_is_no_model_list_is_unreachable(llm: LlmServer) -> None:
    llm.body = b"<html>captive portal</html>"
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, llm.url)())
    assert report.checks["llm"] == "unreachable"


def test_llm_not_found_is_unreachable(llm: LlmServer) -> None:
    llm.status = 404
    [report] = asyncio.run(probe_for({HostKind.FORGEJO: ScriptedHost()}, llm.url)())
    assert report.checks["llm"] == "unreachable"
