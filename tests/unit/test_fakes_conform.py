"""The test doubles stand in for the protocols they claim, member for member.

Each fake declares the protocol it implements (it subclasses it). Subclassing alone would
let a missing method fall back to the protocol's empty body, so this test checks that every
protocol member is defined by the fake itself, with the same parameters and the same
sync/async nature. The real implementations are held to the same rule, so a protocol and
its clients cannot drift apart either.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import pytest
from tests.support.gateway_process import _FileRecordingRunner
from tests.unit.gateway.test_readiness import ScriptedHost
from tests.unit.review.test_pipeline_fakes import FakeHost, MemoryStore
from tests.unit.review.test_pipeline_fakes import ScriptedModel as PipelineModel
from tests.unit.review.test_verify import ScriptedModel as VerifyModel

from auto_review.chat.handlers import LearningsStore
from auto_review.core.jobs import RecordingRunner, ReviewRunner
from auto_review.hosts.base import ForgeProbe, PipelineHost, PullRequestSource, ReviewHost
from auto_review.hosts.forgejo import ForgejoClient
from auto_review.hosts.github import GitHubClient
from auto_review.llm.api import LanguageModel
from auto_review.llm.client import OpenAICompatibleClient
from auto_review.review.pipeline import ReviewHistory
from auto_review.store.sqlite_review import ReviewStore


def protocol_members(protocol: type) -> dict[str, Any]:
    """Methods and attributes a protocol (with its protocol bases) declares."""
    members: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base in (object, Protocol) or not getattr(base, "_is_protocol", False):
            continue
        for name, value in vars(base).items():
            if not name.startswith("_") and callable(value):
                members[name] = value
        for name in getattr(base, "__annotations__", {}):
            members.setdefault(name, None)
    return members


def own_definition(cls: type, name: str) -> tuple[type, Any] | None:
    """Where ``cls`` really defines ``name``: the first class in its MRO that is not a
    protocol (a protocol's empty body does not count)."""
    for base in cls.__mro__:
        if getattr(base, "_is_protocol", False) or base is object:
            continue
        if name in vars(base) or name in getattr(base, "__annotations__", {}):
            return base, vars(base).get(name)
    return None


def mismatches(cls: type, protocol: type) -> list[str]:
    problems = []
    for name, declared in protocol_members(protocol).items():
        found = own_definition(cls, name)
        if found is None:
            problems.append(f"{cls.__name__} lacks {name}")
            continue
        _, value = found
        if declared is None or value is None:
            continue  # an attribute
        if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(value):
            problems.append(f"{cls.__name__}.{name}: async differs from the protocol")
        want = [(p.name, p.kind) for p in inspect.signature(declared).parameters.values()]
        have = [(p.name, p.kind) for p in inspect.signature(value).parameters.values()]
        if want != have:
            problems.append(f"{cls.__name__}.{name}{have} != protocol {want}")
    return problems


PAIRS = [
    (FakeHost, PipelineHost),
    (ScriptedHost, ForgeProbe),
    (PipelineModel, LanguageModel),
    (VerifyModel, LanguageModel),
    (MemoryStore, ReviewHistory),
    (MemoryStore, LearningsStore),
    (_FileRecordingRunner, ReviewRunner),
    (RecordingRunner, ReviewRunner),
    (ForgejoClient, ReviewHost),
    (GitHubClient, ReviewHost),
    (OpenAICompatibleClient, LanguageModel),
    (ReviewStore, ReviewHistory),
    (ReviewStore, LearningsStore),
]


@pytest.mark.parametrize(
    ("cls", "protocol"), PAIRS, ids=[f"{c.__name__}-{p.__name__}" for c, p in PAIRS]
)
def test_implementation_matches_its_protocol(cls: type, protocol: type) -> None:
    assert mismatches(cls, protocol) == []


def test_the_check_sees_a_missing_method_and_a_changed_signature() -> None:
    class HalfHost(ForgeProbe, PullRequestSource):
        kind = None

        async def ping(self) -> None: ...

        async def get_pull_request(self, repo: object, pr: int) -> None: ...

    assert mismatches(HalfHost, PullRequestSource) == [
        "HalfHost.get_pull_request[('self', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>), "
        "('repo', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>), "
        "('pr', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>)] != protocol "
        "[('self', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>), "
        "('repo', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>), "
        "('number', <_ParameterKind.POSITIONAL_OR_KEYWORD: 1>)]",
        "HalfHost lacks list_recent_pr_comments",
    ]
