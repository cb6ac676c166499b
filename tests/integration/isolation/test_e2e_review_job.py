"""Issue 4's acceptance, end to end: `auto-review gateway` with default settings (the OCI
container) runs a review job that reaches a loopback HTTPS forge on a private CA and a
loopback LLM server, through the egress proxy only.

The forge (:mod:`tests.support.https_forge`) serves the Forgejo API and git smart HTTP on
ONE https host:port with a certificate from a throwaway CA; the operator's ``AR_CA_FILE``
names that CA. The launcher binds the file read-only at /etc/auto-review/ca.pem and hands
the inner gateway that path, so its HTTP clients and git (``http.sslCAInfo``) trust it.
A signed ``pull_request`` webhook then makes the inner gateway fetch the PR, clone it,
ask the LLM and post a review with an inline comment and a final commit status.

Scenarios: root and an unprivileged user with the embedded runtime and runc, root with
crun (the same bundle; rootless crun 1.8 refuses this host's hybrid cgroups), and root and
an unprivileged user running the ``auto-review`` command of the wheel installed with
``uv tool install``, and root running it installed with ``pipx install``
(:mod:`tests.support.tool_install`; the bundle is staged from that tool's own virtual
environment). The inner
network namespace holds only lo: everything it reached went through the proxy, whose
refusal counters stay at zero. Git in the container runs its credential helper with
/bin/sh, which the bundle binds for that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.review.test_pipeline_setup import (
    CHEAP_MODEL,
    REASONING_MODEL,
    ModelScript,
    finding,
    findings_answer,
    forgejo_pr_delivery,
    wait_for,
)
from tests.support.fake_llm import FakeLlm, check_recorded_traffic
from tests.support.gateway_process import forgejo_headers
from tests.support.https_forge import HttpsForgejo, make_private_ca
from tests.support.openapi_check import ApiSpec
from tests.support.tool_install import (
    ToolInstall,
    pipx_install,
    uv_tool_install,
    wheel_under_test,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

BOT = "auto-review-bot"
CART_BASE = "def total(prices):\n    return sum(prices)\n"
CART_HEAD = "def total(prices, discount):\n    return sum(prices) - discount - discount\n"
SCENARIOS = {
    "root-embedded": (False, None),
    "rootless-embedded": (True, None),
    "root-runc": (False, "runc"),
    "root-crun": (False, "crun"),
    "rootless-runc": (True, "runc"),
}
# The single file made by scripts/build-release, when given (.ci/run gives it after the
# build): the same review, the file itself as the launcher, as root and rootless.
SINGLE_FILE = os.environ.get("SINGLE_FILE_UNDER_TEST")
if SINGLE_FILE:
    SCENARIOS |= {"root-single-file": (False, None), "rootless-single-file": (True, None)}
SCENARIOS |= {"root-tool-install": (False, None), "rootless-tool-install": (True, None),
              "root-pipx-install": (False, None)}  # fmt: skip
CA_INSIDE = "/etc/auto-review/ca.pem"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    support.require_root()
    made = support.make_user_sandbox()
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def wheel(sandbox: support.UserSandbox) -> Path:
    return wheel_under_test(sandbox.base / "wheel")


@pytest.fixture(scope="module")
def tool(sandbox: support.UserSandbox, wheel: Path) -> ToolInstall:
    """The wheel installed with uv where the unprivileged user can run it too."""
    return uv_tool_install(sandbox.base / "tool-install", wheel)


@pytest.fixture(scope="module")
def pipx_tool(sandbox: support.UserSandbox, wheel: Path) -> ToolInstall:
    return pipx_install(sandbox.base / "pipx-install", wheel)


def readable_copy(single_file: Path, sandbox: support.UserSandbox) -> Path:
    """The file where the unprivileged user can run it too (0755 in a 0755 directory)."""
    copy = sandbox.base / single_file.name
    if not copy.exists():
        shutil.copy2(single_file, copy)
        copy.chmod(0o755)
    return copy


def refusals(metrics: str) -> float:
    return support.metric_value(metrics, "auto_review_egress_refused_total")


def run_review_job(workdir: Path, run_as: support.RunAs, runtime: str | None) -> dict[str, Any]:
    """Start the launcher, deliver one webhook, wait for the final status; what was seen."""
    workdir.mkdir(parents=True)
    run_as.own(workdir)
    tls = make_private_ca(workdir / "tls")  # ca.pem 0644 in a 0755 directory: any user reads it
    forge = HttpsForgejo.serve(workdir / "served", tls, token=support.CANARY_TOKEN, bot_login=BOT)
    llm = FakeLlm(api_key=support.CANARY_LLM, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    llm.respond(ModelScript([findings_answer(
        finding("shop/cart.py", 2, title="Discount subtracted twice"),
        summary="A discount parameter is added.",
    )]))  # fmt: skip
    repo = forge.create_repository("acme", "shop", {"shop/cart.py": CART_BASE}, number=1)
    repo.push({"shop/cart.py": CART_HEAD})
    forge.publish(repo, body="Adds a discount.")
    settings = support.gateway_settings(
        forge.url, llm.url, workdir / "state", support.free_port()
    )
    settings.update({
        "AR_CA_FILE": str(tls.ca),
        "AR_BOT_LOGIN": BOT,
        "AR_LLM_REASONING_MODEL": REASONING_MODEL,
        "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
        "AR_LLM_TIMEOUT_SECONDS": "10",
        "AR_HTTP_TIMEOUT_SECONDS": "10",
    })  # fmt: skip
    seen: dict[str, Any] = {"ca": str(tls.ca.resolve())}
    try:
        launcher = support.start_launcher(
            workdir / "run", run_as, settings, *(["--oci-runtime", runtime] if runtime else [])
        )
        try:
            [bundle] = launcher.bundles()
            seen["mounts"] = json.loads((bundle / "config.json").read_text())["mounts"]
            with launcher.client() as client:
                seen["info"] = client.get("/info").json()
                seen["metrics_before"] = client.get("/metrics").text
                body = json.dumps(
                    forgejo_pr_delivery("acme", "shop", 1, repo.head_sha, repo.base_sha)
                ).encode()
                headers = forgejo_headers(support.CANARY_WEBHOOK, body, "pull_request")
                answer = client.post("/webhooks/forgejo", content=body, headers=headers)
                seen["webhook"] = answer.status_code
                wait_for(
                    lambda: [s for s in forge.statuses(repo.head_sha) if s.state != "pending"],
                    timeout=40, what="the job's final commit status",
                )  # fmt: skip
                seen["metrics_after"] = wait_for(
                    lambda: (text := client.get("/metrics").text)
                    and 'auto_review_jobs_total{outcome="succeeded"} 1.0' in text
                    and text,
                    timeout=10, what="the job counted as succeeded",
                )  # fmt: skip
        finally:
            seen["exit"] = launcher.stop()
        seen["log"] = launcher.logs()
    finally:
        forge.stop()
        llm.stop()
    seen["head"] = repo.head_sha
    seen["statuses"] = [(s.state, s.context) for s in forge.statuses(repo.head_sha)]
    seen["reviews"] = forge.posted_reviews("acme", "shop", 1)
    seen["exchanges"] = list(forge.exchanges)
    seen["git_requests"] = list(forge.git.request_lines)
    seen["git_authorized"] = forge.git.authorized
    seen["llm_checked"] = check_recorded_traffic(llm)
    seen["reasoning_prompts"] = [r.last_user_text for r in llm.chat_requests(REASONING_MODEL)]
    return seen


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_webhook_becomes_a_review_through_the_egress_proxy(
    name: str, sandbox: support.UserSandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rootless, runtime = SCENARIOS[name]
    run_as = sandbox.run_as if rootless else support.root_run_as()
    if name.endswith("single-file"):
        assert SINGLE_FILE is not None
        program = readable_copy(Path(SINGLE_FILE), sandbox)
        # Root names its unpack cache; the user gets the default, ~/.cache/auto-review.
        cache = tmp_path / "unpack-cache"
        program_env = {} if rootless else {"AR_UNPACK_CACHE": str(cache)}
        run_as = dataclasses.replace(run_as, program=program, program_env=program_env)
        if rootless:
            cache = Path(run_as.env()["HOME"]) / ".cache" / "auto-review"
    installed: ToolInstall | None = None
    if name.endswith(("tool-install", "pipx-install")):
        installed = request.getfixturevalue("tool" if "tool" in name else "pipx_tool")
        run_as = dataclasses.replace(run_as, program=installed.command, python_path=None)
    # The unprivileged user cannot reach pytest's 0700 temporary directory.
    workdir = (sandbox.base if rootless else tmp_path) / f"review-{name}"
    seen = run_review_job(workdir, run_as, runtime)

    # Default settings: the container, the verified posture, the pipeline built inside.
    assert seen["info"]["runtime_isolation"]["mode"] == "oci"
    assert seen["info"]["review_pipeline"] == "available"
    # The CA file is bound read-only at the fixed path, nothing else of the host's /etc.
    [ca_mount] = [m for m in seen["mounts"] if m["destination"] == CA_INSIDE]
    assert ca_mount["source"] == seen["ca"]
    assert {"bind", "ro", "nosuid", "nodev"} <= set(ca_mount["options"])
    sources = [m["source"] for m in seen["mounts"] if m["type"] == "bind"]
    if installed is not None:
        # The tool's own environment, bound read-only; not the dev environment or the tree.
        environment = str(installed.environment)
        binds = {m["destination"]: m for m in seen["mounts"] if m["type"] == "bind"}
        [site] = [d for d in binds if d.startswith(environment) and d.endswith("site-packages")]
        assert binds[site]["source"] == site and "ro" in binds[site]["options"]
        # The tool's interpreter (Debian's python3, the environment's bin/python links to it).
        interpreter = binds[f"{environment}/bin/python"]
        assert interpreter["source"] == os.path.realpath(installed.python)
        assert "ro" in interpreter["options"]
        assert not [s for s in sources if s.startswith((sys.prefix, str(support.REPO_ROOT)))]
    elif run_as.program is not None:
        # The file's own runtime, bound read-only: the entry it unpacked itself into in its
        # cache (the program and its _internal directory), at the same path; nothing of the
        # host's Python, and the file itself is not needed inside.
        [entry] = [path for path in cache.iterdir() if not path.name.startswith(".")]
        [unpacked] = [m for m in seen["mounts"] if m["destination"] == str(entry)]
        assert unpacked["source"] == str(entry)
        assert "ro" in unpacked["options"]
        assert str(run_as.program) not in sources
        assert not [source for source in sources if source.startswith(sys.base_prefix)]

    # The job: webhook accepted, PR cloned over git smart HTTP on the forge's https port,
    # the model asked, one review with the inline comment, and the final status.
    assert seen["webhook"] == 202
    assert seen["git_authorized"] >= 2, seen["git_requests"]
    assert any(line.startswith("GET /acme/shop.git/info/refs") for line in seen["git_requests"])
    assert any(line == "POST /acme/shop.git/git-upload-pack" for line in seen["git_requests"])
    [prompt] = seen["reasoning_prompts"]
    assert "sum(prices) - discount - discount" in prompt  # the diff came from the clone
    [review] = seen["reviews"]
    assert review.commit_id == seen["head"]
    assert [(c.path, c.line, c.side) for c in review.comments] == [("shop/cart.py", 2, "new")]
    assert "Discount subtracted twice" in review.comments[0].body
    # One pending status per attempt: an attempt that met a transient failure on a loaded
    # machine (logged with its error type) is retried and posts pending again.
    assert "job finished" in seen["log"]  # the inner gateway's log, where retries show
    retries = seen["log"].count("job met a transient failure, will retry")
    pending = [("pending", "auto-review")] * (1 + retries)
    assert seen["statuses"] == [*pending, ("failure", "auto-review")], seen["log"]

    # Every forge exchange against Gitea's API description; every LLM exchange against
    # the OpenAI description.
    ApiSpec.gitea().assert_conforms(seen["exchanges"])
    assert {e.headers.get("authorization") for e in seen["exchanges"]} == {
        f"token {support.CANARY_TOKEN}"
    }
    assert seen["llm_checked"] >= 2

    # Only the proxy carried it: nothing refused before or after, and it counted tunnels
    # (the forge over https) and forwards (the plain-http LLM).
    before, after = seen["metrics_before"], seen["metrics_after"]
    assert support.metric_value(after, "auto_review_egress_proxy_up") == 1
    assert refusals(before) == refusals(after) == 0
    connects = support.metric_value(after, "auto_review_egress_allowed_total", kind="connect")
    forwards = support.metric_value(after, "auto_review_egress_allowed_total", kind="forward")
    assert connects > support.metric_value(
        before, "auto_review_egress_allowed_total", kind="connect"
    )
    assert forwards >= 2

    assert seen["exit"] == 0
    for canary in support.CANARIES:
        assert canary not in seen["log"]
    if rootless:
        assert os.stat(seen["ca"]).st_uid == 0  # root's file, readable by its mode bits


pytestmark = pytest.mark.timeout(180)
