"""Numbers too big for a database id: a 404 in a path, a 400 in a query, never a crash."""

from __future__ import annotations

import pytest
from werkzeug.routing import IntegerConverter

from nudger import tokens
from nudger.web import MAX_ID, DatabaseId
from tests.adminkit import make_admin, post, redis, sign_in
from tests.factories import make_person
from tests.pagekit import SEND, app_for, csrf_token, learner_with_first_step

__all__ = ["redis"]

HUGE = "9999999999999999999999"  # past 2**63 - 1: SQLite's driver raised OverflowError
JUST_OVER = str(MAX_ID + 1)


@pytest.fixture
def learner(session, settings, now):
    boss = make_person(session, "boss@example.com", "Bea Boss")
    _, enrolment, _step = learner_with_first_step(session, settings, now, manager=boss)
    return {
        "me": tokens.make_token(settings, "me", enrolment.id),
        "team": tokens.make_token(settings, "team", boss.id),
    }


@pytest.fixture
def admin(settings, session, now, redis):
    make_admin(session, now)
    client = app_for(settings, now).test_client()
    sign_in(client)
    return client


@pytest.mark.parametrize("number", [HUGE, JUST_OVER])
@pytest.mark.parametrize(
    "path",
    [
        "/me/{me}/done/{n}",
        "/me/{me}/snooze/{n}",
        "/team/{team}/confirm/{n}",
    ],
)
def test_a_learner_or_manager_form_with_a_huge_step_id_is_not_found(
    settings, now, learner, path, number
):
    client = app_for(settings, now + SEND).test_client()
    form = csrf_token(client.get(f"/me/{learner['me']}").text)

    response = client.post(path.format(n=number, **learner), data={"csrf_token": form})

    assert response.status_code == 404
    assert "Page not found" in response.text


@pytest.mark.parametrize("number", [HUGE, JUST_OVER])
@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/admin/people/{n}"),
        ("post", "/admin/enrolments/{n}/pause"),
        ("post", "/admin/enrolments/{n}/move"),
        ("post", "/admin/mail/{n}/retry"),
        ("get", "/outbox/{n}"),
        ("get", "/outbox/{n}/html"),
        ("get", "/outbox/{n}.eml"),
        ("get", "/outbox/{n}.ics"),
        ("get", "/outbox/1/{n}.ics"),
    ],
)
def test_a_huge_id_in_a_console_or_outbox_address_is_not_found(admin, method, path, number):
    url = path.format(n=number)
    response = admin.get(url) if method == "get" else post(admin, url)
    assert response.status_code == 404
    assert "Page not found" in response.text


@pytest.mark.parametrize("value", [HUGE, JUST_OVER, "soon", "-1", "1e3", "\uff11\uff12"])
@pytest.mark.parametrize("path", ["/admin/enrolments", "/admin/mail", "/admin/audit", "/outbox"])
def test_a_bad_before_in_a_list_address_is_a_bad_request(admin, path, value):
    response = admin.get(path, query_string={"before": value})
    assert response.status_code == 400
    assert "&#39;before&#39;" in response.text and "must be a number" in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", ["/admin/enrolments", "/admin/mail", "/admin/audit", "/outbox"])
def test_the_largest_id_still_pages_a_list(admin, path):
    assert admin.get(path, query_string={"before": str(MAX_ID)}).status_code == 200


def test_every_integer_in_an_address_is_bounded_to_a_database_id(settings):
    app = app_for(settings, None)
    integers = [
        (rule.rule, converter)
        for rule in app.url_map.iter_rules()
        for converter in rule._converters.values()
        if isinstance(converter, IntegerConverter)
    ]
    assert len(integers) >= 10
    for rule, converter in integers:
        assert isinstance(converter, DatabaseId) and converter.max == MAX_ID, rule
