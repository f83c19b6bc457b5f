"""Notes a learner offers to the people who do a step later, and an admin hiding them."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import func, select

from nudger import tokens
from nudger.models import AuditLog, EnrolmentStep
from nudger.privacy.erasure import erase_person
from nudger.tick.run import tick
from tests.adminkit import PASSWORD, admin_app, make_admin, post, redis, sign_in
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import (
    SEND,
    app_for,
    assert_accessible,
    chromium,
    csrf_token,
    fresh,
    live_server,
    sent_steps,
)

__all__ = ["redis"]

NAMES = ["Ada Lovelace", "Brian Kernighan", "Cleo Park", "Dan Abramov", "Eve Ito"]


def cohort(session, settings, now, count: int = len(NAMES)) -> list:
    """Enrol `count` people on one journey today; return (person, first step) pairs."""
    journey = make_journey(session)
    people = []
    for name in NAMES[:count]:
        email = name.split()[0].lower() + "@example.com"
        person = make_person(session, email=email, name=name)
        people.append((person, make_enrolment(session, person, journey, now.date())))
    tick(session, settings, now + SEND, enqueue=False)
    return [(person, sent_steps(session, enrolment)["read"]) for person, enrolment in people]


def done_url(settings, es) -> str:
    return "/done/" + tokens.make_token(settings, "done", es.id)


def complete(client, settings, es, note: str, share_later: bool = True):
    """Press "Mark as done" with a note, ticking (or not) the box that offers it to others."""
    url = done_url(settings, es)
    data = {"csrf_token": csrf_token(client.get(url).text), "note": note, "share_note": ["no"]}
    if share_later:
        data["share_later"] = "yes"
    return client.post(url, data=data)


def test_a_ticked_note_is_shown_to_a_later_learner_without_a_name(settings, session, now):
    (ada, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    client = app_for(settings, now + SEND).test_client()
    complete(client, settings, ada_step, "Asked my team what they would change first.")
    assert fresh(session, ada_step).note_for_others is True

    page = client.get(done_url(settings, brian_step)).text
    assert "From others who did this step" in page
    assert "Asked my team what they would change first." in page
    for identifying in (ada.name, "Ada", ada.email):
        assert identifying not in page

    after = complete(client, settings, brian_step, "", share_later=False).text
    assert "Asked my team what they would change first." in after
    assert "Ada" not in after


def test_a_note_left_unticked_is_not_shown_to_anyone_else(settings, session, now):
    (_, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    client = app_for(settings, now + SEND).test_client()
    complete(client, settings, ada_step, "Only for me.", share_later=False)
    assert fresh(session, ada_step).note_for_others is False
    page = client.get(done_url(settings, brian_step)).text
    assert "Only for me." not in page
    assert "From others who did this step" not in page


def test_the_box_is_unticked_and_labelled_on_the_done_page(settings, session, now):
    ((_, ada_step),) = cohort(session, settings, now, 1)
    page = app_for(settings, now + SEND).test_client().get(done_url(settings, ada_step)).text
    box = page[page.index('name="share_later"') - 80 : page.index('name="share_later"') + 120]
    assert "checked" not in box
    assert 'id="later-step"' in box
    assert '<label for="later-step">Share my note with people who do this step later' in page


def test_at_most_the_three_newest_notes_are_shown(settings, session, now):
    steps = [es for _, es in cohort(session, settings, now)]
    for i, es in enumerate(steps[:4]):
        client = app_for(settings, now + SEND + timedelta(minutes=i)).test_client()
        complete(client, settings, es, f"Note number {i}.")
    page = app_for(settings, now + SEND + timedelta(hours=1)).test_client()
    text = page.get(done_url(settings, steps[4])).text
    shown = [f"Note number {i}." for i in range(4) if f"Note number {i}." in text]
    assert shown == ["Note number 1.", "Note number 2.", "Note number 3."]
    newest_first = [text.index(f"Note number {i}.") for i in (3, 2, 1)]
    assert newest_first == sorted(newest_first)


def test_a_learner_is_not_shown_their_own_note_as_someone_elses(settings, session, now):
    ((_, ada_step),) = cohort(session, settings, now, 1)
    client = app_for(settings, now + SEND).test_client()
    after = complete(client, settings, ada_step, "My own words.").text
    assert "From others who did this step" not in after
    assert "From others who did this step" not in client.get(done_url(settings, ada_step)).text


def test_an_admin_hides_a_note_and_later_learners_no_longer_see_it(settings, session, now, redis):
    (ada, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    learner = app_for(settings, now + SEND).test_client()
    complete(learner, settings, ada_step, "Something better left unsaid.")

    make_admin(session, now)
    admin = admin_app(settings, now + SEND).test_client()
    sign_in(admin)
    person_page = admin.get(f"/admin/people/{ada.id}").text
    assert "Shown to later learners, without a name" in person_page
    assert f"/admin/notes/{ada_step.id}/hide" in person_page

    # A GET of the action changes nothing: only the form's POST does.
    assert admin.get(f"/admin/notes/{ada_step.id}/hide").status_code == 405
    assert fresh(session, ada_step).note_hidden_at is None

    response = post(admin, f"/admin/notes/{ada_step.id}/hide", follow_redirects=True)
    assert "The note is hidden from later learners." in response.text
    assert fresh(session, ada_step).note_hidden_at is not None
    assert "Something better left unsaid." not in learner.get(done_url(settings, brian_step)).text
    assert "Hidden from later learners" in admin.get(f"/admin/people/{ada.id}").text
    entry = session.exec(select(AuditLog).where(AuditLog.action == "note.hide")).one()
    assert (entry.subject_type, entry.subject_id) == ("enrolment_step", ada_step.id)
    assert entry.actor.startswith("admin")

    post(admin, f"/admin/notes/{ada_step.id}/show")
    assert fresh(session, ada_step).note_hidden_at is None
    assert "Something better left unsaid." in learner.get(done_url(settings, brian_step)).text
    actions = session.exec(select(AuditLog.action).where(AuditLog.action.like("note.%"))).all()
    assert sorted(actions) == ["note.hide", "note.show"]


def test_a_note_never_offered_cannot_be_hidden(settings, session, now, redis):
    ((_, ada_step),) = cohort(session, settings, now, 1)
    complete(app_for(settings, now + SEND).test_client(), settings, ada_step, "Private.", False)
    make_admin(session, now)
    admin = admin_app(settings, now + SEND).test_client()
    sign_in(admin)
    assert post(admin, f"/admin/notes/{ada_step.id}/hide").status_code == 404
    assert fresh(session, ada_step).note_hidden_at is None


def test_reading_the_done_page_with_notes_changes_nothing(settings, session, now):
    (_, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    client = app_for(settings, now + SEND).test_client()
    complete(client, settings, ada_step, "Worth a read.")

    def state():
        session.expire_all()
        steps = session.exec(
            select(EnrolmentStep.status, EnrolmentStep.note, EnrolmentStep.note_hidden_at)
        ).all()
        return steps, session.exec(select(func.count()).select_from(AuditLog)).one()

    before = state()
    for _ in range(2):
        assert "Worth a read." in client.get(done_url(settings, brian_step)).text
        client.head(done_url(settings, brian_step))
    assert state() == before


def test_erasing_a_person_removes_the_notes_they_offered(settings, session, now):
    (ada, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    client = app_for(settings, now + SEND).test_client()
    complete(client, settings, ada_step, "Words that go with their writer.")
    erase_person(session, ada.id, actor="admin:test", now=now + SEND)
    assert fresh(session, ada_step).note is None
    assert "Words that go with their writer." not in client.get(done_url(settings, brian_step)).text


def test_the_hide_button_works_with_the_keyboard_and_passes_axe(settings, session, now, redis):
    (ada, ada_step), _ = cohort(session, settings, now, 2)
    complete(app_for(settings, now + SEND).test_client(), settings, ada_step, "Worth sharing.")
    make_admin(session, now)
    with live_server(settings, now + SEND) as (base, _app), chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/admin/login")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/admin/")
        page.goto(f"{base}/admin/people/{ada.id}")
        hide = page.get_by_role("button", name="Hide the note on Read the one-pager")
        assert_accessible(page)
        hide.focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "The note is hidden from later learners." in page.inner_text("main")
        assert page.get_by_role("button", name="Show the note on Read the one-pager").is_visible()
    assert fresh(session, ada_step).note_hidden_at is not None


def test_the_journey_page_lists_the_shared_notes_to_hide_them(settings, session, now, redis):
    (ada, ada_step), (_, brian_step) = cohort(session, settings, now, 2)
    learner = app_for(settings, now + SEND).test_client()
    complete(learner, settings, ada_step, "Shared on the journey page.")
    complete(learner, settings, brian_step, "Kept to myself.", share_later=False)
    make_admin(session, now)
    admin = admin_app(settings, now + SEND).test_client()
    sign_in(admin)
    page = admin.get("/admin/journeys/giving-feedback").text
    assert "Shared on the journey page." in page and "Kept to myself." not in page
    assert ada.name in page  # admins see who wrote it; later learners never do
    response = post(
        admin,
        f"/admin/notes/{ada_step.id}/hide",
        {"next": "/admin/journeys/giving-feedback"},
        follow_redirects=True,
    )
    assert response.request.path == "/admin/journeys/giving-feedback"
    assert "Hidden" in response.text
    assert "Shared on the journey page." not in learner.get(done_url(settings, brian_step)).text
