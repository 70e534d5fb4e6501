"""Admin > People: the user list, the upload form, and the upload size limit."""

from __future__ import annotations

import re

import pytest
from conftest import add_users, batch_id_of, upload


def people(count: int) -> list[dict]:
    return [{"username": f"person{i:03d}", "firstname": "Given" if i % 2 else "Other",
             "surname": f"Family{i:03d}", "email": f"p{i:03d}@corp.example"}
            for i in range(count)]


def rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    # the first cell is the row's selection box, the second the username
    return re.findall(r'<tr data-user="\d+">\s*<td>(?:(?!</td>).)*</td>\s*'
                      r'<td><a href="[^"]+">([^<]+)</a></td>', body)


def test_user_list_is_paginated_with_a_total(app, client):
    add_users(app, people(120))
    page = client.get("/admin/people").get_data(as_text=True)
    assert "121 users" in page
    assert len(rows(page)) == 50
    assert "Add/Update from CSV file" in page
    third = client.get("/admin/people?page=3").get_data(as_text=True)
    assert len(rows(third)) == 21


def test_user_list_searches_username_name_and_email(app, client):
    add_users(app, people(30))
    assert rows(client.get("/admin/people?q=PERSON007").get_data(as_text=True)) == ["person007"]
    assert rows(client.get("/admin/people?q=family012").get_data(as_text=True)) == ["person012"]
    assert rows(client.get("/admin/people?q=p029@corp").get_data(as_text=True)) == ["person029"]
    page = client.get("/admin/people?q=given family").get_data(as_text=True)
    assert len(rows(page)) == 15 and "15 users match" in page
    assert "No users match this search" in client.get("/admin/people?q=zzz").get_data(as_text=True)


def test_upload_form_fields(app, client):
    page = client.get("/admin/people/import").get_data(as_text=True)
    assert re.search(r'<label[^>]*>Generate random passwords and send login credentials via '
                     r'email</label>', page)
    assert "<summary>Advanced</summary>" in page
    assert re.search(r'<select[^>]*name="encoding"', page)
    assert re.search(r'<select[^>]*name="delimiter"', page)
    assert '<option selected value="">Detect</option>' in page


def test_upload_without_a_file_says_so(app, client):
    response = client.post("/admin/people/import", data={}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "Choose a CSV file to upload." in response.get_data(as_text=True)


def test_overrides_win_over_detection(app, client):
    data = "username|firstname|surname|email\nzoe|Zoë|Ünal|zoe@example.com\n".encode("cp1252")
    batch_id = batch_id_of(upload(client, data, delimiter="|", encoding="latin-1"))
    page = client.get(f"/admin/people/import/{batch_id}").get_data(as_text=True)
    assert 'data-detected="encoding">ISO-8859-1<' in page
    assert 'data-detected="delimiter">vertical bar (|)<' in page
    assert "Zoë" in page


def test_too_large_upload_gets_a_friendly_page(app_factory, admin):
    app = app_factory(MAX_UPLOAD_MB=1)
    client = app.test_client()
    client.post("/login", data={"username": "boss", "password": "admin-password-for-tests"})
    big = b"username,firstname,surname,email\n" + b"x" * (1024 * 1024 + 10)
    response = upload(client, big)
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "The file is too large" in page and "at most <strong>1 MB</strong>" in page


@pytest.mark.parametrize("page", ["²", "-1", "99999999999999999999", "abc", "0"])
@pytest.mark.parametrize("path", ["/admin/people", "/admin/people/invitations"])
def test_odd_page_numbers_do_not_break_pages(app, client, path, page):
    assert client.get(path, query_string={"page": page}).status_code == 200


@pytest.mark.parametrize(("site", "query", "expected"), [
    ("Intranet Lyon", "download=1", 'attachment; filename="Intranet-Lyon-users-2026-12-01.csv"'),
    ("Intranet Lyon", "blank=1", 'attachment; filename="Intranet-Lyon-users-template.csv"'),
    # a header carries ASCII only: a real server could not send "Łódź" (latin-1 at most)
    ("Intranet  Łódź / Śląsk", "blank=1",
     'attachment; filename="Intranet-odz-Slask-users-template.csv"'),
    ("Ω", "blank=1", 'attachment; filename="site-users-template.csv"')])
def test_exported_files_are_named_with_the_site_and_the_date(app_factory, site, query,
                                                            expected):
    from conftest import login_admin

    app = app_factory(SITE_NAME=site)
    response = login_admin(app).get(f"/admin/people/export?{query}")
    assert response.headers["Content-Disposition"] == expected
    response.headers["Content-Disposition"].encode("ascii")
