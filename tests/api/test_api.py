"""The REST API as a client sees it: tokens and scopes, problem details, limits, writes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlmodel import func, select

from nudger import webhooks
from nudger.api.access import list_tokens, revoke_token
from nudger.models import AuditLog, Enrolment, EnrolmentStep, Person
from nudger.queue import DEFAULT_QUEUE, queue
from tests.api.apikit import bearer, get, make_token, post
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import app_for, learner_with_first_step

PROBLEM = "application/problem+json"


@pytest.fixture
def client(settings, engine, now):
    return app_for(settings, now).test_client()


def _count(session, model) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(model)).one()


def test_a_read_token_reads_but_may_not_write(client, session, now):
    journey = make_journey(session)
    enrolment = make_enrolment(session, make_person(session), journey, now.date())
    token = make_token(session, now, scope="read")
    assert get(client, token, "/api/v1/journeys").get_json()["items"][0]["slug"] == journey.slug
    answer = post(client, token, f"/api/v1/enrolments/{enrolment.id}/pause")
    assert answer.status_code == 403 and answer.mimetype == PROBLEM
    assert "scope is read" in answer.get_json()["detail"]
    session.expire_all()
    assert session.get(Enrolment, enrolment.id).status == "active"


def test_no_token_a_wrong_one_or_a_revoked_one_gets_401(client, session, now):
    token = make_token(session, now)
    assert get(client, token, "/api/v1/journeys").status_code == 200
    (row,) = list_tokens(session)
    assert row.last_used_at == now  # the list shows when it was last used
    for headers in ({}, bearer("ndg_not-a-token"), {"Authorization": f"Basic {token}"}):
        answer = client.get("/api/v1/journeys", headers=headers)
        assert answer.status_code == 401 and answer.mimetype == PROBLEM
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert revoke_token(session, row.id, now)
    assert get(client, token, "/api/v1/journeys").status_code == 401


def test_tokens_are_kept_only_as_hashes(session, now):
    token = make_token(session, now)
    (row,) = list_tokens(session)
    assert token not in (row.token_hash, row.prefix) and len(token) > 40
    assert token.startswith(row.prefix)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/nowhere", 404),
        ("get", "/api/v1/enrolments/99", 404),
        ("get", "/api/v1/journeys/no-such-journey", 404),
        ("delete", "/api/v1/journeys", 405),
        ("get", "/api/v1/enrolments?limit=9999", 422),
        ("get", "/api/v1/enrolments?cursor=abc", 422),
        ("get", "/api/v1/events?after=1.x", 422),
        ("get", "/api/v1/enrolments?colour=red", 422),
    ],
)
def test_every_error_is_problem_details(client, session, now, method, path, status):
    token = make_token(session, now)
    answer = getattr(client, method)(path, headers=bearer(token))
    assert answer.status_code == status
    assert answer.mimetype == PROBLEM
    body = answer.get_json()
    assert body["status"] == status and body["title"] and body["instance"] == path.split("?")[0]


def test_a_bad_cursor_is_named_as_such_without_a_regular_expression(client, session, now):
    token = make_token(session, now)
    answer = client.get("/api/v1/events?after=zzz", headers=bearer(token))
    assert answer.status_code == 422
    (error,) = answer.get_json()["errors"]
    assert error["field"] == "after" and error["message"].startswith("not a cursor")
    assert "^" not in error["message"]


def test_a_body_that_is_not_json_is_a_400_problem(client, session, now):
    token = make_token(session, now)
    answer = client.post(
        "/api/v1/enrolments", data="email,name", headers=bearer(token), content_type="text/csv"
    )
    assert answer.status_code == 400 and answer.mimetype == PROBLEM


def test_rate_limit_headers_and_429_with_retry_after(settings, engine, session, now):
    client = app_for(dataclasses.replace(settings, api_rate_limit=3), now).test_client()
    token = make_token(session, now)
    seen = []
    for _ in range(3):
        answer = get(client, token, "/api/v1/journeys")
        assert answer.status_code == 200
        assert answer.headers["RateLimit-Policy"] == '"per-token";q=3;w=60'
        seen.append(answer.headers["RateLimit"])
    assert [s.split(";")[1] for s in seen] == ["r=2", "r=1", "r=0"]
    refused = get(client, token, "/api/v1/journeys")
    assert refused.status_code == 429 and refused.mimetype == PROBLEM
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit"].startswith('"per-token";r=0;t=')
    # Another token has its own quota.
    assert get(client, make_token(session, now, name="hr"), "/api/v1/journeys").status_code == 200


def test_post_enrolments_is_all_or_nothing_with_each_items_errors(client, session, now):
    make_journey(session)
    token = make_token(session, now)
    good = {"email": "bo@example.com", "name": "Bo", "journey": "giving-feedback"}
    bad = [
        {"email": "not-an-address", "name": "X", "journey": "giving-feedback"},
        {"email": "cy@example.com", "name": "Cy", "journey": "giving-feedback",
         "timezone": "Mars/Olympus"},
        {"email": "di@example.com", "name": "Di", "journey": "giving-feedback",
         "manager_email": "di@example.com"},
    ]  # fmt: skip
    people = _count(session, Person)
    answer = post(client, token, "/api/v1/enrolments", {"items": [good, *bad]})
    assert answer.status_code == 422 and answer.mimetype == PROBLEM
    errors = {(e["item"], e["field"]) for e in answer.get_json()["errors"]}
    assert errors == {(1, "email"), (2, "timezone"), (3, "manager_email")}
    assert answer.get_json()["detail"] == "3 errors: nothing was written"
    assert _count(session, Person) == people and _count(session, Enrolment) == 0

    answer = post(client, token, "/api/v1/enrolments", {"items": [good]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["enrolments_created"] == 1 and body["enrolments"][0]["email"] == "bo@example.com"
    audit = session.exec(select(AuditLog).where(AuditLog.action == "import")).one()
    assert audit.actor.startswith("api-token:") and audit.actor.endswith(":lms")
    # Sending it again changes nothing.
    again = post(client, token, "/api/v1/enrolments", {"items": [good]}).get_json()
    assert again["enrolments_created"] == 0 and again["unchanged"] == 1
    assert again["enrolments"] == body["enrolments"]


def test_duplicates_inside_one_request_name_the_item(client, session, now):
    make_journey(session)
    token = make_token(session, now)
    items = [
        {"email": "bo@example.com", "name": "Bo", "journey": "giving-feedback"},
        {"email": "bo@example.com", "name": "Robert", "journey": "giving-feedback"},
    ]
    (error,) = post(client, token, "/api/v1/enrolments", {"items": items}).get_json()["errors"]
    assert error["item"] == 1 and "item 0" in error["message"]


def test_completing_a_step_is_idempotent_and_audited(settings, engine, session, now):
    _person, enrolment, first = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + timedelta(hours=3)).test_client()
    token = make_token(session, now)
    key = "read"
    path = f"/api/v1/enrolments/{enrolment.id}/steps/{key}/complete"
    one = post(client, token, path)
    assert one.status_code == 200, one.get_data(as_text=True)
    assert one.get_json()["status"] == "done" and one.get_json()["already"] is False
    two = post(client, token, path).get_json()
    assert two["already"] is True and two["done_at"] == one.get_json()["done_at"]
    session.expire_all()
    assert session.get(EnrolmentStep, first.id).status == "done"
    done = session.exec(select(AuditLog).where(AuditLog.action == "step.done")).all()
    assert len(done) == 1 and done[0].actor.startswith("api-token:")
    not_sent = post(client, token, f"/api/v1/enrolments/{enrolment.id}/steps/reflect/complete")
    assert not_sent.status_code == 409 and not_sent.mimetype == PROBLEM


def test_pause_resume_withdraw_say_whether_anything_changed(client, session, now):
    enrolment = make_enrolment(session, make_person(session), make_journey(session), now.date())
    token = make_token(session, now)
    base = f"/api/v1/enrolments/{enrolment.id}"
    assert post(client, token, f"{base}/pause").get_json() == {
        "id": enrolment.id, "status": "paused", "changed": True,
    }  # fmt: skip
    assert post(client, token, f"{base}/pause").get_json()["changed"] is False
    assert post(client, token, f"{base}/resume").get_json()["status"] == "active"
    assert post(client, token, f"{base}/withdraw").get_json()["status"] == "withdrawn"
    actions = session.exec(
        select(AuditLog.action).where(AuditLog.actor.like("api-token:%")).order_by(AuditLog.id)
    ).all()
    assert actions == ["enrolment.pause", "enrolment.resume", "enrolment.withdraw"]


def test_enrolments_are_paged_by_cursor_newest_first(client, session, now):
    journey = make_journey(session)
    other = make_journey(session, slug="other")
    ids = [
        make_enrolment(session, make_person(session, f"p{i}@example.com"), journey, now.date()).id
        for i in range(5)
    ]
    make_enrolment(session, make_person(session, "x@example.com"), other, now.date())
    token = make_token(session, now)
    seen, path = [], "/api/v1/enrolments?journey=giving-feedback&limit=2"
    while path:
        answer = get(client, token, path)
        page = answer.get_json()
        assert len(page["items"]) <= 2
        seen += [e["id"] for e in page["items"]]
        if page["next_cursor"]:
            link = answer.headers["Link"]
            assert f"cursor={page['next_cursor']}" in link and 'rel="next"' in link
            path = link[1 : link.index(">")]
        else:
            assert "Link" not in answer.headers
            path = None
    assert seen == sorted(ids, reverse=True)


def test_one_enrolment_shows_its_steps_and_emails(settings, engine, session, now):
    _person, enrolment, _first = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + timedelta(hours=3)).test_client()
    body = get(client, make_token(session, now), f"/api/v1/enrolments/{enrolment.id}").get_json()
    assert [s["key"] for s in body["steps"]] == ["read", "discuss", "reflect"]
    assert [s["status"] for s in body["steps"]] == ["sent", "scheduled", "scheduled"]
    assert [e["kind"] for e in body["emails"]] == ["step"] and body["ratings"] == []


def test_the_openapi_document_is_3_1_and_its_errors_are_problem_details(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/api/v1/journeys", "/api/v1/journeys/{slug}", "/api/v1/enrolments",
        "/api/v1/enrolments/{enrolment_id}",
        "/api/v1/enrolments/{enrolment_id}/steps/{key}/complete",
        "/api/v1/enrolments/{enrolment_id}/pause", "/api/v1/enrolments/{enrolment_id}/resume",
        "/api/v1/enrolments/{enrolment_id}/withdraw", "/api/v1/events",
    }  # fmt: skip
    for path in doc["paths"].values():
        for op in path.values():
            assert op["responses"]["401"]["content"].keys() == {PROBLEM}
            assert "RateLimit" in op["responses"]["200"]["headers"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_docs_page_lists_every_operation_with_no_script(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    page = client.get("/api/docs")
    html = page.get_data(as_text=True)
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    )
    assert "<script" not in html and "style=" not in html
    for path, methods in doc["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in html


def test_the_event_feed_pages_by_cursor_and_filters_by_type(settings, engine, session, now):
    _person, enrolment, _first = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + timedelta(hours=3)).test_client()
    token = make_token(session, now)
    post(client, token, f"/api/v1/enrolments/{enrolment.id}/steps/read/complete")
    first = get(client, token, "/api/v1/events?limit=1").get_json()
    assert len(first["items"]) == 1
    rest = get(client, token, f"/api/v1/events?after={first['next_cursor']}").get_json()
    everything = first["items"] + rest["items"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {"step.sent", "step.completed"} <= {e["type"] for e in everything}
    done = get(client, token, "/api/v1/events?type=step.completed").get_json()["items"]
    assert [(e["type"], e["enrolment_id"]) for e in done] == [("step.completed", enrolment.id)]
    caught_up = get(client, token, f"/api/v1/events?after={rest['next_cursor']}").get_json()
    assert caught_up == {"items": [], "next_cursor": rest["next_cursor"]}


def test_the_feeds_types_are_the_event_logs():
    from typing import get_args

    from nudger.api.schemas import EventType
    from nudger.events import TYPES

    assert set(get_args(EventType)) == set(TYPES)


def test_a_form_body_is_415_and_a_badly_shaped_item_is_named(client, session, now):
    token = make_token(session, now)
    form = client.post("/api/v1/enrolments", data={"items": "x"}, headers=bearer(token))
    assert form.status_code == 415 and form.mimetype == PROBLEM
    items = [
        {"email": "bo@example.com", "journey": "giving-feedback"},
        {"email": "cy@example.com"},
        {"email": "di@example.com", "journey": "x", "age": 3},
    ]
    answer = post(client, token, "/api/v1/enrolments", {"items": items})
    assert answer.status_code == 422 and answer.mimetype == PROBLEM
    errors = {(e["item"], e["field"]) for e in answer.get_json()["errors"]}
    assert errors == {(1, "journey"), (2, "age")}


def test_a_completion_through_the_api_starts_a_webhook_delivery_at_once(
    settings, engine, session, now
):
    _person, enrolment, _first = learner_with_first_step(session, settings, now)
    webhooks.add_endpoint(session, "https://hr.example.com/hook", ["step.completed"], now)
    deliveries = queue(settings, DEFAULT_QUEUE)
    deliveries.empty()
    client = app_for(settings, now + timedelta(hours=3)).test_client()
    token = make_token(session, now)
    path = f"/api/v1/enrolments/{enrolment.id}/steps/read/complete"
    assert post(client, token, path).status_code == 200
    # the delivery run is queued now, not at the next tick
    assert [job.func_name for job in deliveries.get_jobs()] == ["workers.jobs.deliver_webhooks"]
    assert post(client, token, "/api/v1/enrolments/999/pause").status_code == 404
    assert len(deliveries.get_jobs()) == 1  # a refused write queues nothing
