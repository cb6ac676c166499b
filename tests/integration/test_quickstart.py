"""docs/QUICKSTART.md, run: its shell blocks, in order, against loopback servers.

The commands are read from the markdown (every fenced ``sh`` block is one step), so the
document and this test cannot drift. The only changes made to them:

- the example addresses become the loopback ones: the forge (an https Forgejo fake with
  git smart HTTP on a throwaway CA, :mod:`tests.support.https_forge`), the LLM (the fake
  OpenAI-compatible server) and the gateway's port (a free one);
- ``auth init`` gets ``--password-stdin`` and the password on stdin, there being no
  terminal to type it at;
- a block ending in ``&`` (the gateway) is started in the background, and the next step
  waits until it answers ``/healthz``.

The environment adds only ``AR_CA_FILE`` (the throwaway CA) and ``AR_STATE_DIR`` (a
temporary directory), and ``auto-review`` on ``PATH`` runs this checkout's code. The
gateway runs as the quickstart says: with its embedded container boundary (as root).
At the end the pull request has a review with an inline comment and a final status.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.integration.review.test_pipeline_setup import finding, findings_answer, wait_for
from tests.support.fake_llm import FakeLlm, RecordedRequest, json_reply
from tests.support.https_forge import HttpsForgejo, make_private_ca
from tests.support.openapi_check import ApiSpec
from tests.support.requirements import needs_root
from tests.support.waiting import wait_until

import auto_review

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "QUICKSTART.md"
FORGE_EXAMPLE = "https://git.acme.internal"
LLM_EXAMPLE = "http://127.0.0.1:11434/v1"
GATEWAY_EXAMPLE = "127.0.0.1:8080"
PASSWORD = "CANARY-quickstart-bot-password-6Tz1Qa"
BOT = "review-bot"
BASE = "def total(prices):\n    return sum(prices)\n"
HEAD = "def total(prices, discount):\n    return sum(prices) - discount - discount\n"


def quickstart_steps() -> list[str]:
    text = QUICKSTART.read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)]


def setting(steps: list[str], name: str) -> str:
    for step in steps:
        match = re.search(rf"^{name}=(.*)$", step, re.M)
        if match:
            return match[1]
    raise AssertionError(f"the quickstart sets no {name}")


def test_the_steps_are_the_documented_commands_in_order() -> None:
    commands = [step.split("\n")[0] for step in quickstart_steps()]
    assert [" ".join(c.split()[:3]) for c in commands] == [
        "auto-review secrets generate",
        "cat >> my.env",
        "auto-review auth init",
        "auto-review ops doctor",
        "auto-review gateway --env-file",
        "auto-review webhook register",
        "auto-review webhook test",
        "auto-review ops doctor",
    ]


@needs_root
def test_the_quickstart_ends_in_a_reviewed_pull_request(tmp_path: Path) -> None:
    steps = quickstart_steps()
    reasoning = setting(steps, "AR_LLM_REASONING_MODEL")
    cheap = setting(steps, "AR_LLM_CHEAP_MODEL")
    assert setting(steps, "AR_BOT_LOGIN") == BOT
    assert any("--repo acme/widgets --pr 1 " in step for step in steps)

    tls = make_private_ca(tmp_path / "tls")
    forge = HttpsForgejo.serve(tmp_path / "served", tls, token="not-minted-yet", bot_login=BOT)
    forge.add_password(BOT, PASSWORD)
    repo = forge.create_repository("acme", "widgets", {"shop/cart.py": BASE}, number=1)
    repo.push({"shop/cart.py": HEAD})
    forge.publish(repo, body="Adds a discount.")

    def model(request: RecordedRequest) -> object:
        if request.model == cheap:
            return json_reply({"supported": True, "reason": "compared with the code"})
        return findings_answer(finding("shop/cart.py", 2, title="Discount subtracted twice"))

    llm = FakeLlm(models=[reasoning, cheap]).start()
    llm.respond(model)  # type: ignore[arg-type]

    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "auto-review"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m auto_review.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(auto_review.__file__).resolve().parents[1]),
        "AR_CA_FILE": str(tls.ca),
        "AR_STATE_DIR": str(tmp_path / "state"),
    }
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    gateway: subprocess.Popen[bytes] | None = None
    gateway_log = tmp_path / "gateway.log"
    outputs: list[str] = []
    try:
        for step in steps:
            command = (
                step.replace(FORGE_EXAMPLE, forge.url)
                .replace(LLM_EXAMPLE, llm.url)
                .replace(GATEWAY_EXAMPLE, f"127.0.0.1:{port}")
            )
            if command.endswith("&"):
                with gateway_log.open("wb") as log:
                    gateway = subprocess.Popen(
                        ["bash", "-c", f"exec {command.removesuffix('&').strip()}"],
                        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                wait_until_healthy(gateway, gateway_url, gateway_log)
                continue
            stdin = None
            if command.startswith("auto-review auth init"):
                command += " --password-stdin"
                stdin = PASSWORD + "\n"
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command], cwd=work, env=env, input=stdin,
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if command.startswith("auto-review auth init"):
                # The forge accepts the token it just minted, for its API and for git.
                ((_, _, _, token),) = forge.minted_tokens
                forge.token = token
                forge.git.token = token
        statuses = wait_for(
            lambda: [s for s in forge.statuses(repo.head_sha) if s.state != "pending"],
            timeout=60, what="the review's final commit status",
        )  # fmt: skip
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
        forge.stop()
        llm.stop()
    # The review found a high-severity problem: its status is a failure, with the comment.
    assert [(s.state, s.context) for s in statuses] == [("failure", "auto-review")]
    (review,) = forge.posted_reviews("acme", "widgets", 1)
    assert [c.path for c in review.comments] == ["shop/cart.py"]
    (hook,) = forge.hooks_of("acme", "widgets")
    assert hook.config["url"] == f"{gateway_url}/webhooks/forgejo"
    webhook_test = next(o for o in outputs if o.startswith("ping: "))
    assert "HTTP 202 accepted, 1 job(s) queued" in webhook_test
    doctor_live = outputs[-1]
    assert "[ok] gateway: mode oci embedded verified" in doctor_live
    secrets = [PASSWORD, forge.token, *read_secrets(work / "my.env")]
    for text in [*outputs, gateway_log.read_text(errors="replace")]:
        for secret in secrets:
            assert secret not in text
    assert (work / "my.env").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in work.iterdir()) == ["my.env"]
    ApiSpec.gitea().assert_conforms(forge.exchanges)


def read_secrets(path: Path) -> list[str]:
    names = ("AR_WEBHOOK_SECRET", "AR_CI_REVIEW_TOKEN", "AR_FORGEJO_TOKEN")
    values = []
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in names and value:
            values.append(value)
    assert len(values) == len(names)
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the gateway exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=30, what="/healthz")
    except AssertionError:
        pytest.fail(f"the gateway did not answer /healthz:\n{log.read_text()}")
