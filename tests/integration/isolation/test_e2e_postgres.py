"""Issue 12's acceptance for the embedded container: with AR_DATABASE_URL naming a
PostgreSQL on the host's loopback, an intake-only `auto-review gateway --workers 0` and an
`auto-review worker`, each in its own embedded container (default isolation, as root and as an
unprivileged user),
share the queue: the gateway accepts a signed webhook, the worker reviews the pull request
(loopback HTTPS forge on a private CA, loopback LLM) and posts the review. The inner
network namespaces hold only lo: the database is reached through each launcher's egress
proxy (CONNECT to exactly the database's host:port), whose refusal counters stay at zero."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.integration.review.test_pipeline_setup import (
    CHEAP_MODEL,
    REASONING_MODEL,
    ModelScript,
    finding,
    findings_answer,
    forgejo_pr_delivery,
)
from tests.support.fake_llm import FakeLlm
from tests.support.gateway_process import forgejo_headers
from tests.support.https_forge import HttpsForgejo, make_private_ca
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.rootless import DEBIAN_PYTHON, make_user_tree, make_world_readable
from tests.support.waiting import wait_until

import auto_review

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launcher_support as support

__all__ = ["postgres_server"]

IMPORTS = (
    *support.GATEWAY_IMPORTS,
    "auto_review.cli.worker",
    "auto_review.store.pg_intake",
    "auto_review.store.pg_review",
    "auto_review.store.pg_leader",
    "psycopg",
    "psycopg_pool",
    "psycopg_binary",
)
BOT = "auto-review-bot"
DB_PASSWORD = "CANARY-db-password-container-93be"


def jobs(server: PostgresServer, database: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url(database), autocommit=True) as connection:
        return connection.execute("SELECT status, outcome FROM jobs ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[support.UserSandbox]:
    support.require_root()
    # The launcher sandbox's site, with the PostgreSQL driver the store imports.
    tree = make_user_tree("launcher-rootless-pg-", "runtime", IMPORTS, preloaded="all",
                          byte_compile=True)  # fmt: skip
    # psycopg's binary wheel keeps its libpq beside the package, not in it.
    import psycopg_binary

    libs = Path(psycopg_binary.__file__).resolve().parents[1] / "psycopg_binary.libs"
    shutil.copytree(libs, tree.site / libs.name)
    make_world_readable(tree.site)
    run_as = support.RunAs(
        tree.user.pw_uid, tree.user.pw_gid, DEBIAN_PYTHON, tree.private_dir, tree.site
    )
    yield support.UserSandbox(run_as, tree.base)
    tree.remove()


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_gateway_and_worker_in_containers_share_postgres_through_the_egress_proxy(
    rootless: bool,
    sandbox: support.UserSandbox,
    tmp_path: Path,
    postgres_server: PostgresServer,
) -> None:
    if rootless:
        run_as = sandbox.run_as  # imports the tree the sandbox copied this auto_review into
        tmp_path = sandbox.base / f"postgres-{tmp_path.name}"
        tmp_path.mkdir()
        tmp_path.chmod(0o755)
    else:
        # The launcher imports the auto_review this test imports (a checkout's src too).
        source = str(Path(auto_review.__file__).resolve().parents[1])
        run_as = dataclasses.replace(support.root_run_as(), program_env={"PYTHONPATH": source})
    name = "container_roles_" + ("user" if rootless else "root")
    database = postgres_server.create_database(name)
    postgres_server.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'boxed') THEN"
        f" CREATE ROLE boxed LOGIN PASSWORD '{DB_PASSWORD}'; END IF; END $$"
    )
    postgres_server.psql(f'ALTER DATABASE "{database}" OWNER TO boxed')
    postgres_server.psql("GRANT ALL ON SCHEMA public TO boxed", database=database)
    password_file = tmp_path / "db-password"
    password_file.write_text(DB_PASSWORD + "\n")
    password_file.chmod(0o600)
    run_as.own(password_file)
    tls = make_private_ca(tmp_path / "tls")
    forge = HttpsForgejo.serve(tmp_path / "served", tls, token=support.CANARY_TOKEN, bot_login=BOT)
    llm = FakeLlm(api_key=support.CANARY_LLM, models=[REASONING_MODEL, CHEAP_MODEL]).start()
    launchers: list[support.Launcher] = []
    try:
        llm.respond(ModelScript([findings_answer(finding("cart.py", 2, title="Twice"))]))
        repo = forge.create_repository("acme", "shop", {"cart.py": "a = 1\n"}, number=1)
        repo.push({"cart.py": "a = 1\nb = a - a - a\n"})
        forge.publish(repo, body="Adds b.")

        def settings(name: str) -> dict[str, str]:
            values = support.gateway_settings(
                forge.url, llm.url, tmp_path / name / "state", support.free_port()
            )
            values.update({
                "AR_CA_FILE": str(tls.ca),
                "AR_BOT_LOGIN": BOT,
                "AR_LLM_REASONING_MODEL": REASONING_MODEL,
                "AR_LLM_CHEAP_MODEL": CHEAP_MODEL,
                "AR_DATABASE_URL": f"postgresql://boxed@127.0.0.1:{postgres_server.port}/{database}",
                "AR_DATABASE_PASSWORD_FILE": str(password_file),
            })  # fmt: skip
            return values

        gateway = support.start_launcher(
            tmp_path / "gateway", run_as, settings("gateway"), "--workers", "0"
        )
        launchers.append(gateway)
        with gateway.client() as client:
            body = json.dumps(
                forgejo_pr_delivery("acme", "shop", 1, repo.head_sha, repo.base_sha)
            ).encode()
            headers = forgejo_headers(support.CANARY_WEBHOOK, body, "pull_request")
            assert (
                client.post("/webhooks/forgejo", content=body, headers=headers).status_code == 202
            )
            assert client.get("/info").json()["isolation"]["mode"] == "oci"
        # Committed in PostgreSQL by the contained gateway, and nobody runs it there.
        assert jobs(postgres_server, database) == [("pending", None)]
        worker = support.start_launcher(
            tmp_path / "worker", run_as, settings("worker"), command_name="worker"
        )
        launchers.append(worker)
        wait_until(
            lambda: jobs(postgres_server, database) == [("done", "succeeded")],
            timeout=90,
            what="the contained worker finishing the job",
        )
        with worker.client() as client:
            info = client.get("/info").json()
            assert (info["role"], info["isolation"]["mode"]) == ("worker", "oci")
            worker_metrics = client.get("/metrics").text
        with gateway.client() as client:
            gateway_metrics = client.get("/metrics").text
    finally:
        exits = [launcher.stop() for launcher in launchers]
        forge.stop()
        llm.stop()
    assert exits == [0, 0]
    [review] = forge.posted_reviews("acme", "shop", 1)
    assert [(c.path, c.line) for c in review.comments] == [("cart.py", 2)]
    for metrics in (gateway_metrics, worker_metrics):
        assert support.metric_value(metrics, "auto_review_egress_refused_total") == 0
    logs = "".join(launcher.logs() for launcher in launchers)
    assert DB_PASSWORD not in logs
    assert support.CANARY_TOKEN not in logs
    # The launchers' allowlists: the database's host:port, as a tunnel only.
    assert f"postgresql://127.0.0.1:{postgres_server.port} (database)" in logs
