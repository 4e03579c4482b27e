"""The report's JSON API, CSV, page and command line, on the real app and database.

The app's clock is fixed at ``NOW`` of the unit tests, so the figures those tests spell
out for the same rows apply here too.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.reports import _wait, channel_label
from inbox.agents import create_agent, create_api_token
from inbox.models import Agent, Channel
from tests.conftest import AGENT_PASSWORD, login
from tests.inbox.test_reports import NOW, Rows, add_backlog, add_history, at
from tests.inbox.test_satisfaction_report import add_answer

API = "/api/v1/reports"
REPORT_ROUTES = [f"{API}/backlog", f"{API}/trend", f"{API}/trend.csv", f"{API}/satisfaction"]


@pytest.fixture
def config(config):
    return dataclasses.replace(config, time_zone="Europe/Berlin")


@pytest.fixture
def fixed_clock(monkeypatch):
    monkeypatch.setattr("gateway.reports.utcnow", lambda: NOW)


@pytest.fixture
def people(state) -> dict[str, str]:
    """Create an agent, a manager and an admin; return an API token of each, by role."""
    tokens = {}
    with state.session_factory() as session:
        for role, email in [("agent", "ada@example.com"), ("manager", "mia@example.com"), ("admin", "root@example.com")]:
            person = create_agent(session, email, role.title(), AGENT_PASSWORD, role)
            tokens[role] = create_api_token(session, person, "tests")
        session.commit()
    return tokens


@pytest.fixture
def rows(state, whatsapp_channel, people):
    with state.session_factory() as session:
        manager = session.query(Agent).filter_by(email="mia@example.com").one()
        yield Rows(session, session.get(Channel, whatsapp_channel.id), manager)


def _get(client, path: str, token: str, **params):
    return client.get(path, query_string=params, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("path", REPORT_ROUTES)
def test_report_api_needs_credentials(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("path", REPORT_ROUTES)
def test_report_api_rejects_agents(app, people, path):
    response = _get(app.test_client(), path, people["agent"])
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert "manager role" in response.json["error"]["message"]


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_report_api_admits_managers_and_admins(app, people, role):
    for path in REPORT_ROUTES:
        assert _get(app.test_client(), path, people[role]).status_code == 200, path


def test_backlog_api_figures(app, people, rows, fixed_clock):
    made = add_backlog(rows)
    body = _get(app.test_client(), f"{API}/backlog", people["manager"]).json

    assert body["total"] == 5
    assert body["unassigned"] == 4
    assert {row["key"]: row["count"] for row in body["by_status"]} == {"open": 3, "pending": 1, "snoozed": 1}
    assert {row["key"]: row["count"] for row in body["by_age"]} == {
        "under_1h": 1, "1h_4h": 1, "4h_24h": 1, "1d_3d": 1, "over_3d": 1,
    }
    assert [row["label"] for row in body["by_team"]] == ["Billing", "No team"]
    assert body["oldest"][0]["id"] == made["forgotten"].id
    assert body["oldest"][0]["waiting_seconds"] == 10 * 86400
    assert body["generated_at"] == NOW.isoformat()


def test_backlog_api_limit(app, people, rows, fixed_clock):
    add_backlog(rows)
    client = app.test_client()
    assert len(_get(client, f"{API}/backlog", people["manager"], limit="2").json["oldest"]) == 2

    for bad in ["0", "101", "ten"]:
        response = _get(client, f"{API}/backlog", people["manager"], limit=bad)
        assert response.status_code == 400, bad
        assert response.json["error"]["field"] == "limit"


def test_trend_api_days_in_workspace_zone(app, people, rows, fixed_clock):
    add_history(rows)
    body = _get(app.test_client(), f"{API}/trend", people["manager"], days="3").json

    assert body["time_zone"] == "Europe/Berlin"
    assert (body["from"], body["to"]) == ("2026-12-08", "2026-12-10")
    assert [day["date"] for day in body["days"]] == ["2026-12-08", "2026-12-09", "2026-12-10"]
    assert [day["created"] for day in body["days"]] == [1, 2, 1]
    assert [day["resolved"] for day in body["days"]] == [0, 1, 1]
    assert [day["open_at_end"] for day in body["days"]] == [2, 3, 3]


def test_trend_api_default_is_fourteen_days(app, people, fixed_clock):
    body = _get(app.test_client(), f"{API}/trend", people["manager"]).json
    assert len(body["days"]) == 14
    assert body["to"] == "2026-12-10"


@pytest.mark.parametrize(("params", "field"), [
    ({"days": "91"}, "days"),
    ({"days": "-1"}, "days"),
    ({"from": "2026-12-11"}, "from"),
    ({"from": "12/01/2026"}, "from"),
    ({"from": "2026-12-05", "to": "2026-12-01"}, "from"),
    ({"from": "2026-01-01", "to": "2026-12-01"}, "from"),
    ({"to": "2026-12-11"}, "to"),
    ({"from": "2026-12-01", "days": "3"}, "days"),
])
def test_trend_api_rejects_bad_range(app, people, fixed_clock, params, field):
    for path in [f"{API}/trend", f"{API}/trend.csv"]:
        response = _get(app.test_client(), path, people["manager"], **params)
        assert response.status_code == 400, (path, params)
        assert response.json["error"]["code"] == "invalid"
        assert response.json["error"]["field"] == field
        assert response.json["error"]["message"]


def test_trend_csv(app, people, rows, fixed_clock):
    add_history(rows)
    response = _get(app.test_client(), f"{API}/trend.csv", people["manager"], **{"from": "2026-12-08", "to": "2026-12-09"})

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="switchboard-trend-2026-12-08-2026-12-09.csv"'
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert table[0] == [
        "date", "created", "resolved", "open_at_end", "first_responses",
        "median_first_response_seconds", "p90_first_response_seconds",
    ]
    assert table[1] == ["2026-12-08", "1", "0", "2", "0", "", ""]
    assert table[2] == ["2026-12-09", "2", "1", "3", "0", "", ""]
    assert len(table) == 3


def test_trend_csv_has_first_response_times(app, people, rows, fixed_clock):
    conversation = rows.conversation(NOW.replace(hour=9))
    rows.reply(conversation, NOW.replace(hour=9, minute=30))
    rows.session.commit()
    table = list(csv.reader(io.StringIO(
        _get(app.test_client(), f"{API}/trend.csv", people["manager"], days="1").get_data(as_text=True)
    )))
    assert table[1][4:] == ["1", "1800", "1800"]


def _add_answers(rows: Rows) -> None:
    """Add three ratings (5, 4, 2) for the manager on 9 December and a yes the day before, in Berlin."""
    for score in [5, 4, 2]:
        add_answer(rows, at("2026-12-09 10:00"), "rating", score, rows.agent)
    add_answer(rows, at("2026-12-08 10:00"), "yes_no", 1, rows.agent)
    rows.session.commit()


def test_satisfaction_api_figures(app, people, rows, fixed_clock):
    _add_answers(rows)
    body = _get(app.test_client(), f"{API}/satisfaction", people["manager"], days="2").json

    assert (body["from"], body["to"], body["time_zone"]) == ("2026-12-09", "2026-12-10", "Europe/Berlin")
    assert body["answers"] == 3
    assert body["ratings"] == 3
    assert body["average_rating"] == 3.67
    assert body["by_score"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    assert (body["yes"], body["no"], body["yes_share"]) == (0, 0, None)
    assert [(row["name"], row["ratings"]) for row in body["by_agent"]] == [("Manager", 3)]


def test_satisfaction_api_rejects_bad_range(app, people, fixed_clock):
    response = _get(app.test_client(), f"{API}/satisfaction", people["manager"], days="91")
    assert response.status_code == 400
    assert response.json["error"]["field"] == "days"


# ---- The page ---------------------------------------------------------------------------------


def test_report_page_redirects_anonymous_to_login(app):
    response = app.test_client().get("/reports")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_report_page_rejects_agents(app, people):
    client = app.test_client()
    login(client, "ada@example.com")
    response = client.get("/reports")
    assert response.status_code == 403
    assert "manager role" in response.get_data(as_text=True)


def test_report_page_shows_figures(app, people, rows, fixed_clock):
    add_backlog(rows)
    client = app.test_client()
    login(client, "mia@example.com")
    page = client.get("/reports").get_data(as_text=True)

    assert 'id="stat-total">5<' in page
    assert 'id="stat-unassigned">4<' in page
    assert "Europe/Berlin" in page
    assert "#conversation=" in page
    assert 'href="/reports" aria-current="page">Reports<' in page


def test_report_page_channel_labels(app, state, people, rows, fixed_clock):
    add_backlog(rows)
    with state.session_factory() as session:
        session.add(Channel(kind="email", name="Support", address="support@example.com", settings={}))
        session.commit()
    client = app.test_client()
    login(client, "mia@example.com")
    page = client.get("/reports").get_data(as_text=True)
    by_channel = page[page.index('id="by-channel"'):]
    by_channel = by_channel[:by_channel.index("</table>")]

    labels = re.findall(r'<th scope="row">([^<]*)</th>', by_channel)
    assert labels == ["WhatsApp support", "Mail", "Support (Email)"]


@pytest.mark.parametrize(("name", "kind", "label"), [
    ("WhatsApp", "whatsapp", "WhatsApp"),
    ("Shop whatsapp line", "whatsapp", "Shop whatsapp line"),
    ("Support", "whatsapp", "Support (WhatsApp)"),
    ("Support email", "email", "Support email"),
    ("Mailbox", "email", "Mailbox"),
    ("Support", "email", "Support (Email)"),
    ("Chat", "sms", "Chat (sms)"),
])
def test_channel_label(name, kind, label):
    assert channel_label(name, kind) == label


@pytest.mark.parametrize(("query", "message", "field"), [
    ("days=500", "Last must be from 1 to 90 days, not &#39;500&#39;. Choose a number of days in its menu.", "range-days"),
    ("days=3&from=2026-12-01", "Choose either a number of days under Last or a custom range with From, not both.", "range-days"),
    ("from=12/01/2026", "From must be a date such as 2026-01-31, not &#39;12/01/2026&#39;.", "range-from"),
    ("from=2026-12-09&to=2026-12-01", "From (2026-12-09) is after To (2026-12-01). Choose a From day on or before the To day.",
     "range-from"),
    ("from=2026-12-11", "From (2026-12-11) is after today (2026-12-10). Choose today or an earlier day.", "range-from"),
    ("from=2026-01-01&to=2026-12-01", "From 2026-01-01 to 2026-12-01 is 335 days, more than the 90 a trend shows.", "range-from"),
    ("to=Friday", "To must be a date such as 2026-01-31, not &#39;Friday&#39;. Pick a day, or leave To empty", "range-to"),
    ("to=2026-12-11", "To (2026-12-11) is after today (2026-12-10). Choose today or an earlier day.", "range-to"),
])
def test_report_page_errors_name_labels(app, people, fixed_clock, query, message, field):
    client = app.test_client()
    login(client, "mia@example.com")
    response = client.get(f"/reports?{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert message in page
    assert re.search(rf'id="{field}"[^>]* aria-invalid="true" aria-describedby="range-error', page)
    # The page names its fields by their labels, never by the API's lower-case parameter names.
    error = re.search(r'id="range-error">([^<]*)<', page).group(1)
    assert not error.startswith(("days ", "from ", "to ")), error
    assert 'id="stat-total">0<' in page


def test_trend_api_errors_name_parameters(app, people, fixed_clock):
    response = _get(app.test_client(), f"{API}/trend", people["manager"], days="500")
    assert response.json["error"]["message"] == "days must be a whole number from 1 to 90, not '500'."
    assert response.json["error"]["field"] == "days"


def test_header_links_reports_for_managers_only(app, people):
    manager = app.test_client()
    login(manager, "mia@example.com")
    assert 'href="/reports"' in manager.get("/account").get_data(as_text=True)

    agent = app.test_client()
    login(agent, "ada@example.com")
    assert 'href="/reports"' not in agent.get("/account").get_data(as_text=True)


# ---- The command line -------------------------------------------------------------------------


def test_cli_report_backlog(database_url, tmp_path, rows):
    add_backlog(rows)
    result = CliRunner().invoke(main, ["report", "backlog", "--limit", "2"], catch_exceptions=False, env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
    })
    assert result.exit_code == 0, result.output
    assert ": 5 conversations (open, pending or snoozed), 4 unassigned" in result.output
    assert "\nSTATUS\tIN BACKLOG\n" in result.output
    assert "Pending\t1\n" in result.output
    assert "Billing\t2\n" in result.output
    # The command runs on the real clock, but the order of the waits is the same.
    oldest = [line for line in result.output.splitlines() if line.split("\t")[0].isdigit()]
    assert len(oldest) == 2
    assert oldest[0].endswith("\tForgotten")


def test_cli_report_trend_rejects_bad_range(database_url, tmp_path):
    result = CliRunner().invoke(main, ["report", "trend", "--days", "91"], env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
    })
    assert result.exit_code == 1
    assert "days must be a whole number from 1 to 90" in result.output


def test_cli_report_trend_names_the_zone(database_url, tmp_path):
    result = CliRunner().invoke(main, ["report", "trend", "--days", "2"], catch_exceptions=False, env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
        "SWITCHBOARD_TIME_ZONE": "America/New_York",
    })
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Days in America/New_York"
    assert lines[1].startswith("DATE\tCREATED\tRESOLVED\tOPEN AT END")
    assert len(lines) == 4


def test_report_page_shows_satisfaction(app, people, rows, fixed_clock):
    _add_answers(rows)
    client = app.test_client()
    login(client, "mia@example.com")

    page = client.get("/reports", query_string={"days": "3"}).get_data(as_text=True)
    empty = client.get("/reports", query_string={"days": "1"}).get_data(as_text=True)

    assert 'id="stat-ratings">3<' in page
    assert 'id="stat-average-rating">3.7 <span class="report-stat__unit">of 5</span>' in page
    assert 'id="stat-yes-share">100%<' in page
    assert 'id="satisfaction-by-agent"' in page
    assert 'id="satisfaction-empty"' not in page
    assert 'id="satisfaction-empty"' in empty
    assert 'id="stat-ratings"' not in empty


def test_report_page_heading_names_every_section(app, people, fixed_clock):
    client = app.test_client()
    login(client, "mia@example.com")

    page = client.get("/reports").get_data(as_text=True)

    assert "<title>Backlog, trend and satisfaction · Switchboard</title>" in page
    assert "<h1>Backlog, trend and satisfaction</h1>" in page
    assert 'id="backlog-heading">Backlog now<' in page
    assert 'id="trend-heading">Trend<' in page
    assert 'id="satisfaction-heading">Customer satisfaction<' in page


def test_cli_report_satisfaction(database_url, tmp_path, rows, monkeypatch):
    _add_answers(rows)
    monkeypatch.setattr("inbox.models.utcnow", lambda: NOW)
    result = CliRunner().invoke(main, ["report", "satisfaction", "--from", "2026-12-08", "--to", "2026-12-09"],
                                catch_exceptions=False, env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
    })

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Answers from 2026-12-08 to 2026-12-09, days in UTC"
    assert lines[1] == "AGENT\tRATINGS\tAVERAGE RATING\tYES OR NO ANSWERS\tANSWERED YES %"
    assert lines[2] == "Manager\t3\t3.7\t1\t100"
    assert lines[3] == "All agents\t3\t3.7\t1\t100"
    assert lines[4] == "Ratings by score: 5: 1  4: 1  3: 0  2: 1  1: 0"


def test_cli_and_page_show_same_average(app, database_url, tmp_path, people, rows, fixed_clock, monkeypatch):
    # 13 / 4 = 3.25 lies halfway between two tenths.
    for score in [4, 3, 3, 3]:
        add_answer(rows, at("2026-12-09 10:00"), "rating", score, rows.agent)
    rows.session.commit()
    monkeypatch.setattr("inbox.models.utcnow", lambda: NOW)
    client = app.test_client()
    login(client, "mia@example.com")

    page = client.get("/reports", query_string={"from": "2026-12-09", "to": "2026-12-09"}).get_data(as_text=True)
    result = CliRunner().invoke(main, ["report", "satisfaction", "--from", "2026-12-09", "--to", "2026-12-09"],
                                catch_exceptions=False, env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
    })

    assert 'id="stat-average-rating">3.3 <span class="report-stat__unit">of 5</span>' in page
    assert re.search(r'<th scope="row">.*Manager.*</th>\s*<td class="report-number">4</td>\s*'
                     r'<td class="report-number">3.3</td>', page)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2] == "Manager\t4\t3.3\t0\t-"
    assert result.output.splitlines()[3] == "All agents\t4\t3.3\t0\t-"


def test_cli_report_satisfaction_rejects_bad_range(database_url, tmp_path):
    result = CliRunner().invoke(main, ["report", "satisfaction", "--days", "0"], env={
        "SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path),
    })
    assert result.exit_code == 1
    assert "days must be a whole number from 1 to 90" in result.output


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "–"), (44.6, "45 s"), (59.6, "1 min"), (165, "3 min"), (3569, "59 min"), (3570, "1 h"),
    (5371, "1 h 30 min"), (86380, "1 d"), (2 * 86400 + 4 * 3600 + 50 * 60, "2 d 5 h"),
])
def test_wait_rounds_to_last_unit(seconds, shown):
    assert _wait(seconds) == shown
