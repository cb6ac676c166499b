"""Chat handlers: help, remember/forget per repository, questions answered from the PR."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from tests.unit.review.test_pipeline_fakes import (
    REPO,
    SECRET,
    FakeHost,
    MemoryStore,
    Origin,
    ScriptedModel,
    make_deps,
    make_origin,
)

from auto_review.chat.commands import parse_chat_command
from auto_review.chat.handlers import ChatHandlers, help_text
from auto_review.core.errors import is_transient
from auto_review.core.jobs import JobKind, JobOutcome, JobRequest
from auto_review.core.refs import HostKind, RepoRef
from auto_review.hosts.base import HostAuthError, PullRequestDetails
from auto_review.llm.api import LlmInvalidAnswer, LlmUnavailable, Tier
from auto_review.review.workspace.checkout import HeadMismatch
from auto_review.store.review_rules import MAX_LEARNINGS_PER_REPO
from auto_review.store.sqlite_review import ReviewStore

OTHER_REPO = RepoRef(HostKind.FORGEJO, "acme", "other")


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = make_origin(tmp_path)
    origin.push({"app.py": "def total(items):\n    return sum(items) * 2  # doubled\n"})
    return origin


def request(
    kind: JobKind, argument: str = "", *, repo: RepoRef = REPO, by: str = "alice"
) -> JobRequest:
    return JobRequest(kind, repo, 1, "", 77, argument, by, "webhook")


def handlers(
    tmp: Path, host: FakeHost, model: ScriptedModel | None = None, store: MemoryStore | None = None
) -> tuple[ChatHandlers, MemoryStore]:
    store = store or MemoryStore()
    deps = make_deps(tmp, host, model or ScriptedModel(), store)
    return ChatHandlers(deps, store, mention="@review-bot"), store


def test_help_lists_every_command_and_explains_a_parser_complaint(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    chat, _ = handlers(tmp_path, host)
    problem = parse_chat_command("@review-bot remember", mention="@review-bot")
    assert problem is not None and problem.kind.value == "help"
    outcome = asyncio.run(chat.handle(request(JobKind.CHAT_HELP, problem.argument)))
    assert outcome is JobOutcome.SUCCEEDED
    [reply] = host.issue_comments
    assert reply.startswith("@alice That command did not work")
    for word in ("help", "re-review", "remember", "forget"):
        assert f"`@review-bot {word}" in reply


def test_help_text_never_holds_a_runnable_command() -> None:
    # Every command in the help is inside a code span, so the bot never reads its own help
    # as a command (even without AR_BOT_LOGIN).
    assert parse_chat_command(help_text("@review-bot"), mention="@review-bot") is None


def test_remember_and_forget_are_scoped_per_repository(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    chat, store = handlers(tmp_path, host)
    text = "prefer pathlib over os.path"
    assert asyncio.run(chat.handle(request(JobKind.CHAT_REMEMBER, text))) is JobOutcome.SUCCEEDED
    assert [(n.text, n.author) for n in store.learnings("forgejo|acme/shop")] == [(text, "alice")]
    assert "learning #1" in host.issue_comments[-1] and text in host.issue_comments[-1]

    # Another repository cannot forget it.
    other = asyncio.run(chat.handle(request(JobKind.CHAT_FORGET, "1", repo=OTHER_REPO)))
    assert other is JobOutcome.FAILED
    assert "no learning #1 for acme/other" in host.issue_comments[-1]
    assert len(store.learnings("forgejo|acme/shop")) == 1

    done = asyncio.run(chat.handle(request(JobKind.CHAT_FORGET, "1")))
    assert done is JobOutcome.SUCCEEDED and store.learnings("forgejo|acme/shop") == []


def test_a_learning_holding_a_secret_is_refused(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    chat, store = handlers(tmp_path, host)
    outcome = asyncio.run(chat.handle(request(JobKind.CHAT_REMEMBER, f"token is {SECRET}")))
    assert outcome is JobOutcome.FAILED
    assert store.learnings("forgejo|acme/shop") == []
    assert SECRET not in host.issue_comments[-1]


def test_the_acknowledgement_cannot_ping_or_command(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    chat, _ = handlers(tmp_path, host)
    asyncio.run(chat.handle(request(JobKind.CHAT_REMEMBER, "@review-bot forget 1 @everyone")))
    reply = host.issue_comments[-1]
    assert "@everyone" not in reply
    command = parse_chat_command(reply, mention="@review-bot")
    assert command is None


def test_learnings_reach_later_prompts(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    model = ScriptedModel()
    chat, _ = handlers(tmp_path, host, model)
    asyncio.run(chat.handle(request(JobKind.CHAT_REMEMBER, "money is always Decimal")))
    asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "is this right?")))
    assert "money is always Decimal" in model.prompts[-1][1][-1].content


def test_a_question_is_answered_from_the_diff(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(text=f"It doubles the sum. Also the key is {SECRET}. @admin look")
    chat, _ = handlers(tmp_path, host, model)
    outcome = asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "why is it doubled?")))
    assert outcome is JobOutcome.SUCCEEDED
    [(tier, messages)] = model.prompts
    assert tier is Tier.REASONING
    prompt = "\n".join(m.content for m in messages)
    assert "why is it doubled?" in prompt and "sum(items) * 2" in prompt
    [reply] = host.issue_comments
    assert reply.startswith("@alice It doubles the sum.")
    assert SECRET not in reply and "@admin" not in reply


def test_a_question_the_model_cannot_answer_gets_a_fixed_reply(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(errors={Tier.REASONING: LlmInvalidAnswer(f"bad {SECRET}")})
    chat, _ = handlers(tmp_path, host, model)
    assert asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "?"))) is JobOutcome.FAILED
    assert host.issue_comments == [
        "@alice Sorry, I could not answer: the model did not give a usable answer."
    ]


def test_a_forge_auth_failure_gets_a_fixed_reply(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin, fail_with={"git_access": HostAuthError("git_access", "401")})
    chat, _ = handlers(tmp_path, host)
    assert asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "?"))) is JobOutcome.FAILED
    assert "credentials" in host.issue_comments[-1]


def test_llm_unavailable_propagates_for_a_retry(tmp_path: Path, origin: Origin) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(errors={Tier.REASONING: LlmUnavailable("timeout")})
    chat, _ = handlers(tmp_path, host, model)
    with pytest.raises(LlmUnavailable):
        asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "?")))
    assert host.issue_comments == []


@dataclasses.dataclass
class PushedDuringFetch(FakeHost):
    """The forge announces a head, and the branch moves on before git fetches it (once)."""

    pushes: int = 1

    async def get_pull_request_details(self, repo: RepoRef, number: int) -> PullRequestDetails:
        details = await super().get_pull_request_details(repo, number)
        if self.pushes:
            self.pushes -= 1
            self.origin.push({"app.py": "def total(items):\n    return sum(items) * 3\n"})
        return details


def test_a_branch_that_moves_during_the_fetch_makes_the_question_run_again(
    tmp_path: Path, origin: Origin
) -> None:
    """Not "Sorry, I could not answer": the worker retries, and the retry reads the PR as
    it is then."""
    host = PushedDuringFetch(origin)
    model = ScriptedModel(text="It triples the sum.")
    chat, _ = handlers(tmp_path, host, model)
    with pytest.raises(HeadMismatch) as raised:
        asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "what does it do?")))
    assert is_transient(raised.value)
    assert host.issue_comments == []
    assert asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "what does it do?"))) is (
        JobOutcome.SUCCEEDED
    )
    [(_, messages)] = model.prompts
    assert "sum(items) * 3" in "\n".join(m.content for m in messages)
    assert host.issue_comments == ["@alice It triples the sum."]


def test_a_question_over_the_context_budget_gets_a_fixed_reply(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    model = ScriptedModel(text="never asked")
    chat, store = handlers(tmp_path, host, model)
    chat = ChatHandlers(dataclasses.replace(chat.deps, context_tokens=10), store)
    outcome = asyncio.run(chat.handle(request(JobKind.CHAT_QUESTION, "why? " * 400)))
    assert outcome is JobOutcome.FAILED
    assert model.prompts == []
    assert host.issue_comments == [
        "@alice Sorry, I could not answer: the question and the diff do not fit the LLM"
        " context budget."
    ]


def test_remember_past_the_per_repository_limit_gets_a_reply(
    tmp_path: Path, origin: Origin
) -> None:
    host = FakeHost(origin)
    chat, _ = handlers(tmp_path, host)
    real_store = ReviewStore.open(tmp_path / "review.sqlite3")
    for index in range(MAX_LEARNINGS_PER_REPO):
        real_store.add_learning("forgejo|acme/shop", f"learning {index}", "alice")
    chat = ChatHandlers(chat.deps, real_store)
    outcome = asyncio.run(chat.handle(request(JobKind.CHAT_REMEMBER, "one more")))
    assert outcome is JobOutcome.FAILED
    assert "already has as many learnings" in host.issue_comments[-1]
    assert len(real_store.learnings("forgejo|acme/shop")) == MAX_LEARNINGS_PER_REPO
