"""The front door: what Nudger is, where admins sign in, and the site icon."""

from __future__ import annotations

import dataclasses

from nudger import create_app


def test_the_home_page_says_what_nudger_is_and_where_to_sign_in(settings, engine):
    page = create_app(settings).test_client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "learning journey" in html
    assert 'href="/admin/login"' in html
    assert 'href="/outbox"' in html  # mail is captured in development


def test_the_home_page_does_not_point_to_the_outbox_when_mail_goes_out(settings, engine):
    live = dataclasses.replace(settings, smtp_url="smtp://mail.example.com:25")
    html = create_app(live).test_client().get("/").get_data(as_text=True)
    assert 'href="/admin/login"' in html
    assert "/outbox" not in html


def test_the_favicon_is_served_where_browsers_ask_for_it(settings, engine):
    client = create_app(settings).test_client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.mimetype == "image/svg+xml" and icon.data.startswith(b"<svg")
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)
