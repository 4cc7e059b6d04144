"""The promise, per session engine: after the command the storage holds no session of a logged-out
user (looked at first, before a request lets the cutoff middleware hide a leftover), and the old
cookie gets the login page; a dry run changes nothing; kept users stay signed in."""

import pytest
from django.test import Client

from students.tests.helpers import run_command as run, is_signed_in, login, stored, without_cutoff_middleware

pytestmark = pytest.mark.django_db


def test_everyone_is_logged_out(engine, users):
    alice, teacher = login("alice"), login("teacher")
    output = run()
    assert not stored(alice) and not stored(teacher)
    assert not is_signed_in(alice, "alice")
    assert not is_signed_in(teacher, "teacher")
    assert "Successfully logged out all users by deleting" in output
    assert "Also cleaned up 0 expired session(s)" in output
    if engine != "signed_cookies":
        assert "Successfully logged out all users by deleting 2 session(s)" in output


def test_they_can_sign_in_again_afterwards(engine, users):
    login("alice")
    run()
    assert is_signed_in(login("alice"), "alice")


def test_dry_run_leaves_everyone_signed_in(engine, users):
    alice = login("alice")
    output = run("--dry-run")
    assert is_signed_in(alice, "alice")
    assert f"Session engine: {engine} (django.contrib.sessions.backends.{engine})" in output
    assert "DRY RUN: nothing was changed" in output


def test_excluded_user_stays_signed_in(engine, users):
    alice, carol = login("alice"), login("carol")
    run("--exclude-user", "alice")
    assert not stored(carol) and stored(alice) is (engine != "signed_cookies")
    assert is_signed_in(alice, "alice")
    assert not is_signed_in(carol, "carol")


def test_keep_staff_keeps_staff_signed_in(engine, users):
    alice, teacher = login("alice"), login("teacher")
    run("--keep-staff")
    assert not stored(alice) and stored(teacher) is (engine != "signed_cookies")
    assert is_signed_in(teacher, "teacher")
    assert not is_signed_in(alice, "alice")


def test_kept_users_are_logged_out_by_the_next_plain_run(engine, users):
    teacher = login("teacher")
    run("--keep-staff")
    run()
    assert not stored(teacher)
    assert not is_signed_in(teacher, "teacher")


def test_the_purge_alone_logs_out_every_engine_that_stores_sessions(engine, users, settings):
    without_cutoff_middleware(settings)
    alice = login("alice")
    run()
    # signed_cookies stores nothing server-side: only the cutoff middleware can end that session.
    assert is_signed_in(alice, "alice") is (engine == "signed_cookies")


def test_dry_run_reports_the_split(engine, users):
    login("alice"), login("teacher")
    Client().get("/accounts/login/")  # an anonymous visitor with a session (CSRF token only if stored)
    output = run("--dry-run", "--keep-staff")
    if engine == "signed_cookies":
        assert "nothing to delete on the server" in output
    else:
        assert "Live sessions: 2 (2 authenticated, 0 anonymous)" in output
        assert "Would keep 1 session(s) (users: all staff)" in output
        assert "Would log out all users by deleting 1 session(s)" in output
