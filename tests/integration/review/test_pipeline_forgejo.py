"""End to end on Forgejo: signed webhook -> real gateway process -> hermetic clone over HTTPS
-> loopback LLM -> review and status on the loopback Forgejo, every forge exchange checked
against Gitea's Swagger and every LLM exchange against the OpenAI description."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.integration.review.test_pipeline_setup import (
    BOT,
    CHEAP_MODEL,
    FORGE_TOKEN,
    LLM_KEY,
    REASONING_MODEL,
    ModelScript,
    ServedRepo,
    finding,
    findings_answer,
    forgejo_comment_payload,
    forgejo_pr_payload,
    pipeline_settings,
    post_forgejo,
    reasoning_requests,
    running_gateway,
    serve_repo,
    wait_for,
)
from tests.support.fake_forgejo import FakeForgejo, StoredStatus
from tests.support.fake_llm import (
    Answer,
    FakeLlm,
    check_recorded_traffic,
    json_reply,
    rate_limited,
    slow,
    text_reply,
)
from tests.support.gateway_process import start_gateway
from tests.support.openapi_check import ApiSpec

CART_BASE = (
    "from decimal import Decimal\n\n\ndef total(prices):\n    return sum(prices, Decimal(0))\n"
)
CART_HEAD = (
    "from decimal import Decimal\n"
    "\n"
    "\n"
    "def total(prices, discount):\n"
    "    return sum(prices, Decimal(0)) - discount - discount\n"
)
DOUBLE_DISCOUNT = finding("shop/cart.py", 5, title="Discount subtracted twice")


@dataclass
class World:
    tmp: Path
    repo: ServedRepo
    forge: FakeForgejo
    llm: FakeLlm

    def publish_pr(self, **details: object) -> None:
        """(Re)announce the PR at the repository's current head on the fake forge."""
        self.forge.add_pull_request(
            "acme",
            "shop",
            self.repo.number,
            head_sha=self.repo.head_sha,
            base_sha=self.repo.base_sha,
            diff=self.repo.diff(),
            clone_url=self.repo.clone_url,
            **details,  # type: ignore[arg-type]
        )

    def settings(self, **extra: str) -> dict[str, str]:
        return pipeline_settings(
            llm=self.llm, cert=self.repo.server.cert, forgejo_url=self.forge.url, extra=extra
        )

    def final_statuses(self, sha: str) -> list[StoredStatus]:
        return [s for s in self.forge.statuses(sha) if s.state != "pending"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    repo = serve_repo(
        tmp_path,
        {"shop/cart.py": CART_BASE, "README.md": "shop\n"},
        username=BOT,
        token=FORGE_TOKEN,
    )
    repo.push({"shop/cart.py": CART_HEAD})
    forge = FakeForgejo(FORGE_TOKEN, bot_login=BOT).start()
    llm = FakeLlm(api_key=LLM_KEY, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    world = World(tmp_path, repo, forge, llm)
    world.publish_pr(body="Adds a discount parameter.")
    try:
        yield world
    finally:
        forge.stop()
        llm.stop()
        repo.server.close()


def review_once(world: World, **settings: str) -> None:
    with (
        running_gateway(world.tmp / "gateway", world.settings(**settings)) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        answer = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert answer.status_code == 202, answer.text
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the final commit status")


def test_a_webhook_becomes_a_verified_review_with_a_status(world: World) -> None:
    world.llm.respond(
        ModelScript(
            [
                findings_answer(
                    DOUBLE_DISCOUNT,
                    finding("shop/cart.py", 1, title="Imports Decimal"),  # unchanged line
                    finding("shop/cart.py", 4, title="Missing type hints", severity="low"),
                    finding("shop/cart.py", 4, title="Signature changed", severity="medium"),
                    summary="A discount parameter is added.",
                )
            ],
            unsupported=("Signature changed",),
        )
    )
    with (
        running_gateway(world.tmp / "gateway", world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        assert client.get("/info").json()["review_pipeline"] == "available"
        answer = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert answer.status_code == 202, answer.text
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="final status")
        metrics = wait_for(
            lambda: (
                (text := client.get("/metrics").text)
                and 'auto_review_jobs_total{outcome="succeeded"} 1.0' in text
                and text
            ),
            what="the job counted as succeeded",
        )
    logs = gateway.logs()  # after the graceful stop: the job's last lines are written

    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert review.commit_id == world.repo.head_sha
    assert [(c.path, c.line, c.side) for c in review.comments] == [("shop/cart.py", 5, "new")]
    assert "Discount subtracted twice" in review.comments[0].body
    assert "A discount parameter is added." in review.body
    states = [s.state for s in world.forge.statuses(world.repo.head_sha)]
    assert states == ["pending", "failure"]  # one high finding
    assert world.forge.statuses(world.repo.head_sha)[-1].context == "auto-review"

    # The model saw the PR, the verifier saw each finding that passed the guard and floor.
    [reasoning] = reasoning_requests(world.llm)
    assert "sum(prices, Decimal(0)) - discount - discount" in reasoning.last_user_text
    assert "Adds a discount parameter." in reasoning.last_user_text
    checked = [r.last_user_text for r in world.llm.chat_requests(CHEAP_MODEL)]
    assert len(checked) == 2  # "Imports Decimal" (unchanged) and "Missing type hints" (low)
    assert any("Signature changed" in text for text in checked)

    ApiSpec.gitea().assert_conforms(world.forge.exchanges)
    assert check_recorded_traffic(world.llm) >= 3
    assert '"stage_seconds"' in logs and "review finished" in logs
    assert 'auto_review_llm_requests_total{outcome="ok",tier="reasoning"}' in metrics


@pytest.mark.parametrize(
    "first_answers",
    [
        pytest.param([text_reply('{"summary": "cut off", "findings": [')], id="malformed-json"),
        pytest.param(
            [json_reply({"summary": "x", "findings": {"path": "shop/cart.py"}})],
            id="schema-violation",
        ),
        pytest.param([rate_limited(retry_after="0"), rate_limited(retry_after="0")], id="429"),
        pytest.param([slow(findings_answer(DOUBLE_DISCOUNT), 4.0)], id="timeout"),
    ],
)
def test_model_misbehaviour_is_healed_or_retried(world: World, first_answers: list[Answer]) -> None:
    world.llm.script(REASONING_MODEL, first_answers)
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    review_once(world, AR_LLM_TIMEOUT_SECONDS="2")
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]
    assert len(reasoning_requests(world.llm)) == len(first_answers) + 1
    check_recorded_traffic(world.llm)
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)


def test_an_answer_that_stays_invalid_ends_in_an_error_status(world: World) -> None:
    broken = text_reply("I think the code is fine!")
    world.llm.script(REASONING_MODEL, [broken, broken])
    review_once(world)
    assert world.forge.posted_reviews("acme", "shop", 1) == []
    final = world.final_statuses(world.repo.head_sha)[-1]
    assert final.state == "error"
    assert final.description == (
        "review failed at llm: the model's answer did not match the review schema, even after "
        "a retry"
    )
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)


def test_an_over_long_finding_is_dropped_and_counted_the_others_are_posted(
    world: World,
) -> None:
    rambling = finding(
        "shop/cart.py", 4, title="Signature changed without a default", body="x" * 5000
    )
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT, rambling)]))
    with (
        running_gateway(world.tmp / "gateway", world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        answer = post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        assert answer.status_code == 202, answer.text
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the final status")
        metrics = client.get("/metrics").text
    assert len(reasoning_requests(world.llm)) == 1  # no self-heal round for one bad finding
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]
    assert "Dropped 1 malformed finding" in review.body
    assert "body over 4000 characters: 1" in review.body
    assert world.final_statuses(world.repo.head_sha)[-1].state == "failure"  # the high one
    assert (
        'auto_review_findings_invalid_total{reason="body over 4000 characters"} 1.0' in metrics
    )
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)


def test_a_second_push_is_reviewed_incrementally_and_nothing_is_repeated(world: World) -> None:
    new_bug = finding("shop/coupon.py", 2, title="Coupon code compared case-sensitively")
    script = ModelScript([findings_answer(DOUBLE_DISCOUNT)])
    world.llm.respond(script)
    with (
        running_gateway(world.tmp / "gateway", world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="first review")
        first_head = world.repo.head_sha

        world.repo.push({"shop/coupon.py": "def valid(code):\n    return code == 'SAVE'\n"})
        world.publish_pr()
        # The model reports the old finding again next to the new one.
        script.reviews = [findings_answer(DOUBLE_DISCOUNT, new_bug)]
        post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request")
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="second review")

    first, second = world.forge.posted_reviews("acme", "shop", 1)
    assert first.commit_id == first_head and second.commit_id == world.repo.head_sha
    assert [(c.path, c.line) for c in first.comments] == [("shop/cart.py", 5)]
    assert [(c.path, c.line) for c in second.comments] == [("shop/coupon.py", 2)]
    second_prompt = reasoning_requests(world.llm)[-1].last_user_text
    assert "code == 'SAVE'" in second_prompt
    assert "- discount - discount" not in second_prompt  # unchanged since the first review
    # The status of the new head still reflects every finding on the PR.
    assert world.final_statuses(world.repo.head_sha)[-1].state == "failure"
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)


def test_chat_commands_from_comments(world: World) -> None:
    world.llm.respond(
        ModelScript([findings_answer()], question_answer="It subtracts the discount twice.")
    )
    with (
        running_gateway(world.tmp / "gateway", world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):

        def say(comment_id: int, body: str) -> None:
            payload = forgejo_comment_payload(world.repo, comment_id, body)
            assert post_forgejo(client, payload, "issue_comment").status_code == 202

        def replies() -> list[str]:
            return [
                c.body for c in world.forge.issue_comments("acme", "shop", 1) if c.author == BOT
            ]

        say(501, f"@{BOT} help")
        wait_for(lambda: len(replies()) == 1, what="the help reply")
        say(502, f"@{BOT} remember money is always Decimal, never float")
        wait_for(lambda: len(replies()) == 2, what="the remember reply")
        say(503, f"@{BOT} why is the discount there twice?")
        wait_for(lambda: len(replies()) == 3, what="the answer")
        say(504, f"@{BOT} re-review")
        wait_for(lambda: len(replies()) == 4, what="the re-review's reply")
        say(505, f"@{BOT} forget 1")
        wait_for(lambda: len(replies()) == 5, what="the forget reply")

    help_reply, remembered, answered, reviewed, forgot = replies()
    assert reviewed.startswith(f"@alice Reviewed again at `{world.repo.head_sha[:12]}`")
    assert world.final_statuses(world.repo.head_sha)
    assert help_reply.startswith("@alice ") and f"`@{BOT} remember <text>`" in help_reply
    assert "learning #1" in remembered
    assert answered == "@alice It subtracts the discount twice."
    assert forgot == "@alice Forgot learning #1."
    question = [r for r in world.llm.chat_requests(REASONING_MODEL) if "twice?" in r.last_user_text]
    assert "- discount - discount" in question[0].last_user_text  # answered from the diff
    # The learning reached the re-review's prompt.
    assert "money is always Decimal" in reasoning_requests(world.llm)[-1].last_user_text
    ApiSpec.gitea().assert_conforms(world.forge.exchanges)
    check_recorded_traffic(world.llm)


def test_jobs_queued_without_an_llm_are_reviewed_after_a_restart_with_one(world: World) -> None:
    world.llm.respond(ModelScript([findings_answer(DOUBLE_DISCOUNT)]))
    without_llm = {**world.settings(), "AR_LLM_BASE_URL": "", "AR_LLM_REASONING_MODEL": ""}
    workdir = world.tmp / "gateway"
    with (
        running_gateway(workdir, without_llm) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        assert client.get("/info").json()["review_pipeline"].startswith("not available")
        assert (
            post_forgejo(client, forgejo_pr_payload(world.repo), "pull_request").status_code == 202
        )
    assert "AR_LLM_REASONING_MODEL" in gateway.logs()  # the start-up warning names it
    assert world.forge.statuses(world.repo.head_sha) == [] and world.llm.requests == []

    with running_gateway(workdir, world.settings()):  # same state directory
        wait_for(lambda: world.final_statuses(world.repo.head_sha), what="the queued review")
    [review] = world.forge.posted_reviews("acme", "shop", 1)
    assert [c.line for c in review.comments] == [5]


def test_an_unloadable_ca_file_stops_the_start(world: World) -> None:
    bogus = world.tmp / "not-a-bundle.pem"
    bogus.write_text("not a certificate\n")
    gateway = start_gateway(
        world.tmp / "bad-ca", {**world.settings(), "AR_CA_FILE": str(bogus)}, wait=False
    )
    assert gateway.process.wait(timeout=30) == 2
    assert "AR_CA_FILE (--ca-file) cannot be loaded" in gateway.logs()


def test_a_secret_in_a_chat_comment_is_refused_and_kept_nowhere_at_rest(world: World) -> None:
    """`remember` and a question holding the configured forge token: both are answered
    with a refusal, and no file of the state directory holds the token afterwards."""
    world.llm.respond(ModelScript([findings_answer()], question_answer="unused"))
    workdir = world.tmp / "gateway"
    with (
        running_gateway(workdir, world.settings()) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        for comment_id, body in (
            (601, f"@{BOT} remember the deploy token is {FORGE_TOKEN}"),
            (602, f"@{BOT} is {FORGE_TOKEN} still valid?"),
        ):
            payload = forgejo_comment_payload(world.repo, comment_id, body)
            assert post_forgejo(client, payload, "issue_comment").status_code == 202

        def replies() -> list[str]:
            return [
                c.body for c in world.forge.issue_comments("acme", "shop", 1) if c.author == BOT
            ]

        wait_for(lambda: len(replies()) == 2, what="both refusals")
        state_dir = gateway.state_dir
    remembered, answered = sorted(replies())
    assert "it was not stored" in remembered or "it was not stored" in answered
    assert any("it was not used" in reply for reply in (remembered, answered))
    assert world.llm.chat_requests() == []  # the question never reached the model
    holding = [
        str(path.relative_to(state_dir))
        for path in state_dir.rglob("*")
        if path.is_file() and FORGE_TOKEN.encode() in path.read_bytes()
    ]
    assert holding == []
    assert FORGE_TOKEN not in gateway.logs()
