"""Signed, purpose-salted link tokens."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from nudger import tokens


def test_a_token_reads_back_as_its_subject(settings, now):
    token = tokens.make_token(settings, "done", 42, now)
    assert tokens.read_token(settings, "done", token, now) == 42


def test_a_token_for_one_purpose_is_refused_for_another(settings, now):
    token = tokens.make_token(settings, "done", 42, now)
    for purpose in ("me", "team", "mute", "prefs"):
        with pytest.raises(tokens.TokenInvalid) as caught:
            tokens.read_token(settings, purpose, token, now)
        assert not isinstance(caught.value, tokens.TokenExpired)


def test_a_changed_character_makes_a_token_invalid(settings, now):
    token = tokens.make_token(settings, "me", 7, now)
    i = len(token) // 2
    tampered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises(tokens.TokenInvalid):
        tokens.read_token(settings, "me", tampered, now)


def test_a_truncated_token_is_invalid(settings, now):
    token = tokens.make_token(settings, "me", 7, now)
    with pytest.raises(tokens.TokenInvalid):
        tokens.read_token(settings, "me", token[:-6], now)


def test_a_token_signed_with_another_key_is_invalid(settings, now):
    other = dataclasses.replace(settings, secret_key="someone-elses-key")
    token = tokens.make_token(other, "done", 1, now)
    with pytest.raises(tokens.TokenInvalid):
        tokens.read_token(settings, "done", token, now)


@pytest.mark.parametrize("purpose", tokens.PURPOSES)
def test_a_token_expires_after_its_documented_lifetime(settings, now, purpose):
    signed = now - tokens.MAX_AGE[purpose]
    token = tokens.make_token(settings, purpose, 9, signed)
    assert tokens.read_token(settings, purpose, token, now) == 9
    with pytest.raises(tokens.TokenExpired) as caught:
        tokens.read_token(settings, purpose, token, now + timedelta(seconds=1))
    assert caught.value.subject_id == 9
    assert caught.value.signed_at == signed


def test_done_links_last_at_least_a_year_and_team_links_four_months():
    assert tokens.MAX_AGE["done"] >= timedelta(days=365)
    assert tokens.MAX_AGE["me"] >= timedelta(days=365)
    assert tokens.MAX_AGE["team"] == timedelta(days=120)


def test_links_signed_before_a_key_rotation_keep_working(settings, now):
    old_token = tokens.make_token(settings, "done", 5, now)
    rotated = dataclasses.replace(
        settings, secret_key="the-new-key", secret_key_fallbacks=[settings.secret_key]
    )
    assert tokens.read_token(rotated, "done", old_token, now) == 5


def test_new_links_after_a_rotation_use_the_new_key(settings, now):
    rotated = dataclasses.replace(
        settings, secret_key="the-new-key", secret_key_fallbacks=[settings.secret_key]
    )
    new_token = tokens.make_token(rotated, "done", 5, now)
    only_new = dataclasses.replace(settings, secret_key="the-new-key", secret_key_fallbacks=[])
    assert tokens.read_token(only_new, "done", new_token, now) == 5
    with pytest.raises(tokens.TokenInvalid):
        tokens.read_token(settings, "done", new_token, now)


def test_a_retired_key_no_longer_opens_its_links(settings, now):
    old_token = tokens.make_token(settings, "done", 5, now)
    retired = dataclasses.replace(settings, secret_key="the-new-key", secret_key_fallbacks=[])
    with pytest.raises(tokens.TokenInvalid):
        tokens.read_token(retired, "done", old_token, now)


def test_fallback_keys_come_from_the_environment(monkeypatch, tmp_path):
    from nudger.config import load_settings

    monkeypatch.setenv("NUDGER_SECRET_KEY", "new")
    monkeypatch.setenv("NUDGER_SECRET_KEY_FALLBACKS", "older,old")
    settings = load_settings({"instance_path": tmp_path})
    assert settings.secret_key_fallbacks == ["older", "old"]


def test_a_link_is_absolute_on_the_base_url(settings, now):
    url = tokens.url(settings, "mute", 3, now)
    assert url.startswith("http://nudger.test/mute/")
    assert tokens.read_token(settings, "mute", url.rsplit("/", 1)[1], now) == 3


def test_an_unknown_purpose_is_a_programming_error(settings, now):
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens.make_token(settings, "admin", 1, now)


@pytest.mark.parametrize("purpose", tokens.PURPOSES)
@pytest.mark.parametrize(
    "subject_id", [0, 1, 9, 10, 255, 256, 65_535, 123_456_789, 10**10 - 1, 10**10, 10**15 - 1]
)
def test_tokens_are_the_bytes_itsdangerous_makes(settings, now, purpose, subject_id):
    # make_token signs ids directly, for speed; itsdangerous reads them back,
    # so the two must agree byte for byte, at any moment and with any key.
    moments = (now, datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    for moment in moments:
        for key in ("k", "a much longer secret key ✓"):
            keyed = dataclasses.replace(settings, secret_key=key)
            expected = tokens._serializer(keyed, purpose, moment).dumps(subject_id)
            assert tokens.make_token(keyed, purpose, subject_id, moment) == expected


def test_large_ids_go_through_the_serializer_and_still_read_back(settings, now):
    big = 10**20  # long enough that itsdangerous compresses its JSON
    token = tokens.make_token(settings, "done", big, now)

    assert tokens.read_token(settings, "done", token, now) == big
