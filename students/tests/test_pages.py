import pytest

from students.tests.helpers import PASSWORD, is_signed_in, login

pytestmark = pytest.mark.django_db


def test_login_page_has_the_title_and_form(client):
    response = client.get("/accounts/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<title>Log in</title>" in html
    assert 'name="username"' in html and 'name="password"' in html


def test_statistics_page_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_signed_in_student_sees_their_page_and_a_logout_button(users):
    client = login("alice")
    html = client.get("/").content.decode()
    assert "<title>My statistics</title>" in html
    assert 'action="/accounts/logout/"' in html and "Log out" in html


def test_wrong_password_stays_on_the_login_page(users, client):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD + "x"})
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert not is_signed_in(client, "alice")


def test_logout_button_logs_out(users):
    client = login("alice")
    assert client.post("/accounts/logout/").status_code == 302
    assert not is_signed_in(client, "alice")


def test_admin_shows_logout_runs_read_only(users, django_user_model):
    from django.core.management import call_command
    from io import StringIO

    django_user_model.objects.create_superuser("root", password=PASSWORD)
    call_command("logout_all_users", stdout=StringIO())  # records a run and logs everyone out
    client = login("root")
    listing = client.get("/admin/students/logoutrun/")
    assert listing.status_code == 200
    assert "success" in listing.content.decode()
    assert client.get("/admin/students/logoutrun/add/").status_code == 403
    from students.models import LogoutRun

    detail = client.get(f"/admin/students/logoutrun/{LogoutRun.objects.get().pk}/change/")
    assert detail.status_code == 200 and 'name="host"' not in detail.content.decode()  # no input fields
