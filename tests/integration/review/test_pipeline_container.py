"""The review pipeline inside the container: the launcher's inner gateway builds the runner
when an LLM is configured, and a job runs there, reaching the forge only through the egress
proxy. (This loopback Forgejo is plain http and reports an http:// clone URL, which the
workspace refuses: the job ends with the documented error status, which proves it ran to
the clone step inside. The whole job against an HTTPS forge on a private CA, through
``AR_CA_FILE``, is tests/integration/isolation/test_e2e_review_job.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.integration.review.test_pipeline_setup import forgejo_pr_delivery, wait_for
from tests.support.fake_forgejo import FakeForgejo
from tests.support.gateway_process import forgejo_headers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "isolation"))

import launcher_support as support

HEAD = "3" * 40
BASE = "4" * 40


def test_the_inner_gateway_runs_review_jobs(tmp_path: Path) -> None:
    support.require_root()
    run_as = support.root_run_as()
    forge = FakeForgejo(support.CANARY_TOKEN, bot_login="auto-review-bot").start()
    llm = support.LoopbackHttp()
    forge.add_pull_request("acme", "shop", 4, head_sha=HEAD, base_sha=BASE)
    settings = support.gateway_settings(forge.url, llm.url, tmp_path / "state", support.free_port())
    settings.update({"AR_LLM_REASONING_MODEL": "test-model", "AR_BOT_LOGIN": "auto-review-bot"})
    try:
        launcher = support.start_launcher(tmp_path / "run", run_as, settings)
        try:
            with launcher.client() as client:
                info = client.get("/info").json()
                assert info["runtime_isolation"]["mode"] == "oci"
                assert info["review_pipeline"] == "available"
                body = json.dumps(forgejo_pr_delivery("acme", "shop", 4, HEAD, BASE)).encode()
                headers = forgejo_headers(support.CANARY_WEBHOOK, body, "pull_request")
                assert (
                    client.post("/webhooks/forgejo", content=body, headers=headers).status_code
                    == 202
                )
            final = wait_for(
                lambda: [s for s in forge.statuses(HEAD) if s.state != "pending"],
                what="the job's final status",
            )
        finally:
            launcher.stop()
        logs = launcher.logs()
    finally:
        forge.stop()
        llm.close()
    assert [s.state for s in forge.statuses(HEAD)] == ["pending", "error"]
    assert final[-1].description == (
        "review failed at clone: the pull request could not be fetched with git"
    )
    paths = [(e.method, e.path) for e in forge.exchanges]
    assert ("GET", "/api/v1/repos/acme/shop/pulls/4") in paths
    assert any(p.endswith("/.auto_review.yaml") for _, p in paths)
    for canary in (support.CANARY_TOKEN, support.CANARY_LLM, support.CANARY_WEBHOOK):
        assert canary not in logs
    assert (tmp_path / "state" / "review.sqlite3").exists()  # the store lives in the state dir


pytestmark = pytest.mark.timeout(180)
