"""The panel's feedback page and its fine-tuning caps, over HTTP on a real gateway (no engine), real
Redis and SQLite: an operator sees every tenant's feedback and filters it, a tenant admin its own
tenant's only; the limits form sets and clears a tenant's caps."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway import Settings, create_app
from tests.gateway.admin_ui.panel_client import Panel, make_user
from tests.gateway.feedback.conftest import FeedbackGateway
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def gateway(
    gateway_settings: Callable[..., Settings],
    database_url: str,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FeedbackGateway]:
    tmp: Path = tmp_path_factory.mktemp("panel-feedback")
    with ThreadedServer(create_app(gateway_settings(blob_dir=tmp / "blobs", jobs_enabled=False))) as server:
        admin = AdminClient(server.url, admin_key)
        yield FeedbackGateway(server.url, admin, database_url)
        admin.close()


def _logged_in(url: str, username: str) -> Panel:
    panel = Panel(url)
    assert panel.login(username).status_code == 303
    return panel


def test_feedback_page_by_role_and_filters(gateway: FeedbackGateway, database_url: str) -> None:
    mine, theirs = gateway.caller("panel-mine"), gateway.caller("panel-theirs")
    words = {}
    for caller, rating in ((mine, "down"), (theirs, 5)):
        completion = gateway.completion(caller, "Q", "A")
        words[caller.tenant_id] = "comment-" + secrets.token_hex(4)
        made = caller.post(
            "/v1/feedback",
            {"completion_id": completion, "rating": rating, "comment": words[caller.tenant_id]},
        )
        assert made.status_code == 200, made.text
    suffix = secrets.token_hex(3)
    make_user(database_url, f"fb-operator-{suffix}", "operator")
    make_user(database_url, f"fb-tenant-{suffix}", "tenant_admin", mine.tenant_id)

    operator = _logged_in(gateway.url, f"fb-operator-{suffix}")
    page = operator.http.get("/feedback")
    assert page.status_code == 200 and 'href="/admin/ui/feedback"' in page.text
    assert words[mine.tenant_id] in page.text and words[theirs.tenant_id] in page.text
    only = operator.http.get("/feedback", params={"tenant_id": theirs.tenant_id}).text
    assert words[theirs.tenant_id] in only and words[mine.tenant_id] not in only
    downs = operator.http.get("/feedback", params={"rating": "down"}).text
    assert words[mine.tenant_id] in downs and words[theirs.tenant_id] not in downs

    tenant_admin = _logged_in(gateway.url, f"fb-tenant-{suffix}")
    # Its own tenant's only, whatever tenant it names.
    for params in ({}, {"tenant_id": theirs.tenant_id}):
        text = tenant_admin.http.get("/feedback", params=params).text
        assert words[mine.tenant_id] in text and words[theirs.tenant_id] not in text


def test_the_limits_form_sets_the_fine_tuning_caps(gateway: FeedbackGateway, database_url: str) -> None:
    tenant = gateway.admin.tenant("panel-caps-" + secrets.token_hex(3))
    username = "caps-operator-" + secrets.token_hex(3)
    make_user(database_url, username, "operator")
    panel = _logged_in(gateway.url, username)
    assert 'name="fine_tuning_jobs"' in panel.http.get(f"/tenants/{tenant['id']}").text
    saved = panel.post(f"/tenants/{tenant['id']}/limits", fine_tuning_jobs="2", fine_tuning_models="5")
    assert saved.status_code == 303, saved.text
    limits = gateway.admin.http.get(f"/admin/tenants/{tenant['id']}").json()["limits"]
    assert (limits["fine_tuning_jobs"], limits["fine_tuning_models"]) == (2, 5)
    panel.post(f"/tenants/{tenant['id']}/limits", fine_tuning_jobs="", fine_tuning_models="5")
    limits = gateway.admin.http.get(f"/admin/tenants/{tenant['id']}").json()["limits"]
    assert (limits["fine_tuning_jobs"], limits["fine_tuning_models"]) == (None, 5)
