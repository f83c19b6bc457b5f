"""Behind HTTPS: secure cookies, no token in Referer to other sites, forms still work."""

from __future__ import annotations

import dataclasses

from nudger import tokens
from tests.pagekit import app_for, csrf_token, fresh, learner_with_first_step


def test_a_done_form_works_over_https_and_links_leak_no_token(session, settings, now):
    settings = dataclasses.replace(settings, base_url="https://nudger.test")
    _, _, step = learner_with_first_step(session, settings, now)
    app = app_for(settings, now)
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    path = f"/done/{tokens.make_token(settings, 'done', step.id)}"

    page = client.get(path, base_url="https://nudger.test")
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert "Secure" in page.headers.get("Set-Cookie", "")

    # A browser sends the Referer to the same origin, which Flask-WTF requires on HTTPS.
    done = client.post(
        path,
        base_url="https://nudger.test",
        data={"csrf_token": csrf_token(page.get_data(as_text=True))},
        headers={"Referer": f"https://nudger.test{path}"},
    )
    assert done.status_code == 200, done.get_data(as_text=True)
    assert fresh(session, step).status == "done"
