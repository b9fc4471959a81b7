"""Rows from any Temporal client are data (issue 14, point 3): a case started outside this
app, with a row memo or search attributes of the wrong type or shape, is shown as far as it
can be read on every page and never stops the change feed; and the feed is healthy only
while its polls succeed."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionInfo

from cases import temporal as gateway
from cases.config.custom_fields import display
from cases.live import feed, log
from cases.models import ApiToken, CaseAttribute
from cases.store import wire
from cases.temporal.ids import new_case_id
from cases.temporal.rows import decode_row
from cases.temporal.visibility import CaseFilter
from workers.search_attributes import ROW_MEMO_KEY

from .conftest import TEMPORAL_BIN, _persona, eventually, run

# No worker polls it: a crafted case stays running exactly as its starter wrote it.
CRAFTED_QUEUE = "nobody-runs-crafted-cases"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _start_crafted(temporal: Any, settings: Any, memo: Any, **search_attributes: Any) -> str:
    """A case started by the real `temporal` CLI, as any other client of the cluster could:
    the memo and search attributes go in as the JSON given."""
    case_id = new_case_id()
    command = [
        TEMPORAL_BIN, "workflow", "start", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--type", gateway.WORKFLOW_TYPE,
        "--task-queue", CRAFTED_QUEUE, "--workflow-id", case_id,
        "--memo", f"{ROW_MEMO_KEY}={json.dumps(memo)}",
    ]
    for name, value in search_attributes.items():
        command += ["--search-attribute", f"{name}={json.dumps(value)}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return case_id


def _listed(query: str, *case_ids: str) -> list[gateway.CaseRow]:
    def found() -> list[gateway.CaseRow]:
        rows = run(gateway.list_cases(query, 50)).rows
        assert {r.case_id for r in rows} >= set(case_ids)
        return rows

    return eventually(found, timeout=15)


def _named(caplog: Any, case_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and case_id in r.getMessage()]


# --- through the real server --------------------------------------------------------------


@pytest.fixture
def odd_int(temporal, db):
    """An attribute the app has registered as an Int while Temporal holds it as a Keyword:
    its values are text. (The server itself refuses a value of another type than the one
    it registered, a lone keyword for a KeywordList included, so this is how a value of the
    wrong type reaches the app through a real server.)"""
    name = "CxOddCount"
    if name not in run(gateway.namespace_attributes()).custom:
        run(gateway.register_attributes({name: "Keyword"}))
    CaseAttribute.objects.create(name=name, type="Int", label="Odd count",
                                 state=CaseAttribute.REGISTERED)

    def usable() -> None:
        try:
            run(gateway.count_cases(f"{name} = 'x'"))
        except gateway.TemporalUnavailable as err:
            raise AssertionError(err) from err

    eventually(usable, timeout=15)
    return name


def test_a_case_with_a_malformed_row_is_shown_as_far_as_it_can_be_read(
        temporal, settings, supervisor_client, odd_int, caplog):
    settings.TEMPORAL_QUERY_TIMEOUT = 1.0
    word = f"malformed{time.time_ns() % 10**9}"
    case_id = _start_crafted(
        temporal, settings,
        {"version": "banana", "comments": "abc", "requester": {"name": "not text"}},
        CaseTitle=f"Crafted {word}", CaseQueue="general", CaseStatus="new",
        CaseTags=["solo"], CaseUpdatedAt=_iso(datetime.now(UTC)), **{odd_int: "lots"})
    caplog.set_level(logging.WARNING, logger="cases")
    [row] = [r for r in _listed(f"CaseTitle = '{word}'", case_id) if r.case_id == case_id]
    assert (row.version, row.comments, row.requester) == (None, 0, "")
    assert row.tags == ["solo"]
    assert row.title == f"Crafted {word}" and row.queue == "general"
    assert set(row.unreadable) == {"row.version", "row.comments", "row.requester"}
    assert row.attributes[odd_int] == "lots"
    [line] = _named(caplog, case_id)
    assert "row.version" in line and "row.comments" in line
    caplog.clear()

    page = supervisor_client.get(f"/cases/?q={word}&cols={odd_int}")
    assert page.status_code == 200
    body = page.content.decode()
    assert f'id="row-{case_id}"' in body and "unreadable fields" in body
    assert '<td class="attr">lots</td>' in body

    assert supervisor_client.get(f"/dashboard/?q={word}").status_code == 200

    export = supervisor_client.get(f"/cases/export.csv?q={word}")
    assert export.status_code == 200

    async def drain() -> bytes:
        return b"".join([chunk async for chunk in export.streaming_content])

    lines = list(csv.reader(io.StringIO(run(drain()).decode())))
    [cells] = [c for c in lines[1:] if c[0] == case_id]
    assert cells[1] == f"Crafted {word}" and cells[6] == "solo"
    assert cells[lines[0].index("Odd count")] == "lots"
    assert not any(c[0].startswith("# export incomplete") for c in lines[1:])

    # The case page and the API read it without a worker: from Temporal's own record.
    detail = supervisor_client.get(f"/cases/{case_id}/")
    assert detail.status_code == 200
    assert f"Crafted {word}" in detail.content.decode() and 'class="case degraded"' in \
        detail.content.decode()
    token = ApiToken.issue(_persona("intake-bot", "Agent", queues=("general",)), "tests")[1]
    read = Client().get(f"/api/cases/{case_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    # As for any case no worker answers: a JSON 503 that says so, never a 500.
    assert read.status_code == 503 and "No worker answered" in read.json()["error"]
    assert any("history cannot be read" in line for line in _named(caplog, case_id))


def test_the_feed_publishes_past_a_malformed_row_and_its_watermark_moves(
        temporal, settings, open_case, caplog):
    """A version that is text sorted with the numbers of every other row stopped each poll
    before its watermark moved, so no change was pushed again until the case was deleted."""
    feed.stop()  # this test's poller is to be the only one
    store = feed._store()
    store.clear()
    log.current().forget()
    word = f"feedmalformed{time.time_ns() % 10**9}"
    started = datetime.now(UTC)
    crafted = _start_crafted(
        temporal, settings, {"version": "banana", "comments": 1, "requester": "someone"},
        CaseTitle=f"Crafted {word}", CaseQueue="general", CaseStatus="new",
        CaseUpdatedAt=_iso(started))
    normal = open_case(title=f"Normal {word}", queue="general")
    _listed(f"CaseTitle = '{word}'", crafted, normal)
    watermark = started - timedelta(seconds=1)
    store.set(feed.KEY_WATERMARK, wire.dump(wire.TIME, watermark), timeout=None)
    caplog.set_level(logging.WARNING)

    poller = feed.Poller()
    before = time.time()
    assert run(poller.poll_once()) >= 2
    published = _published()[normal][-1]
    assert published.version == 1
    # Shown as far as it can be read.
    assert _published()[crafted][-1].version is None
    assert wire.load(wire.TIME, store.get(feed.KEY_WATERMARK)) >= published.updated_at > watermark
    assert store.get(feed.KEY_POLLED) >= before
    assert any("row.version" in line for line in _named(caplog, crafted))
    # The next poll takes the crafted row back (the overlap), carries on past it again and
    # does not publish it twice.
    run(poller.poll_once())
    assert len(_published()[crafted]) == 1


def _published() -> dict[str, list[Any]]:
    """Every row the change log holds, by case, oldest first."""
    out: dict[str, list[Any]] = {}
    for change in log.current().tail(10_000)[1]:
        out.setdefault(change.case_id, []).append(change.row)
    return out


def test_a_feed_that_cannot_poll_is_unhealthy_while_its_store_reads_fine(settings, monkeypatch):
    settings.FEED_STALE_SECONDS = 0.5
    settings.FEED_LEASE_SECONDS = 1
    bound = settings.FEED_STALE_SECONDS + settings.FEED_LEASE_SECONDS
    store = feed._store()
    store.clear()
    log.current().forget()
    poller, listener = feed.Poller(), feed.Listener()

    async def answering(query: str, page_size: int, token: str | None = None, **kw: Any):
        return gateway.CasePage([])

    async def down(query: str, page_size: int, token: str | None = None, **kw: Any):
        raise gateway.TemporalUnavailable("Temporal did not answer (UNAVAILABLE)")

    monkeypatch.setattr(gateway, "list_cases", answering)
    run(poller.poll_once())
    listener.read_once()
    assert listener.healthy()

    monkeypatch.setattr(gateway, "list_cases", down)
    failing_since = time.monotonic()
    while listener.healthy():
        assert time.monotonic() - failing_since < bound + 1.0, "still healthy"
        with pytest.raises(gateway.TemporalUnavailable):
            run(poller.poll_once())
        listener.read_once()  # the store answers all along
        time.sleep(0.05)
    assert time.monotonic() - listener.last_read < settings.FEED_STALE_SECONDS

    monkeypatch.setattr(gateway, "list_cases", answering)
    run(poller.poll_once())
    listener.read_once()
    assert listener.healthy()


# --- decoding, one bad shape at a time ----------------------------------------------------


def _payload(value: Any = None, raw: bytes | None = None) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"},
                   data=raw if raw is not None else json.dumps(value).encode())


GOOD_SA = {"CaseTitle": "Printer on fire", "CaseStatus": "new", "CasePriority": 2,
           "CaseQueue": "general", "CaseAssignee": "alice", "CaseTags": ["vip", "hw"],
           "CaseDueAt": "2030-01-02T03:04:05Z", "CaseUpdatedAt": "2030-01-01T00:00:00Z",
           "CaseSlaBreached": False}
GOOD_MEMO = {"requester": "Ada", "version": 3, "comments": 2}


def _info(case_id: str, sa: dict[str, Any] | None = None, memo: Any = GOOD_MEMO,
          raw: dict[str, bytes] | None = None, memo_raw: bytes | None = None
          ) -> WorkflowExecutionInfo:
    info = WorkflowExecutionInfo(
        execution=WorkflowExecution(workflow_id=case_id, run_id="run-1"), status=1)
    info.start_time.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    for name, value in {**GOOD_SA, **(sa or {})}.items():
        info.search_attributes.indexed_fields[name].CopyFrom(_payload(value))
    for name, data in (raw or {}).items():
        info.search_attributes.indexed_fields[name].CopyFrom(_payload(raw=data))
    info.memo.fields[ROW_MEMO_KEY].CopyFrom(_payload(memo, memo_raw))
    return info


@pytest.mark.parametrize(("info_args", "field", "expect"), [
    ({"memo": ["not", "a", "dict"]}, "row", {"version": None, "comments": 0,
                                              "requester": ""}),
    ({"memo": 42}, "row", {"version": None, "comments": 0}),
    ({"memo_raw": b"{not json"}, "row", {"version": None}),
    ({"memo_raw": b"[" * 100_000}, "row", {"version": None}),  # past the parser's depth
    ({"memo": {**GOOD_MEMO, "version": "banana"}}, "row.version", {"version": None}),
    ({"memo": {**GOOD_MEMO, "version": True}}, "row.version", {"version": None}),
    ({"memo": {**GOOD_MEMO, "comments": "abc"}}, "row.comments", {"comments": 0}),
    ({"memo": {**GOOD_MEMO, "comments": 1e400}}, "row.comments", {"comments": 0}),
    ({"memo": {**GOOD_MEMO, "requester": {"name": "x"}}}, "row.requester",
     {"requester": ""}),
    ({"sa": {"CaseTags": ["vip", 7, None]}}, "CaseTags", {"tags": ["vip"]}),
    ({"sa": {"CaseTags": {"a": 1}}}, "CaseTags", {"tags": []}),
    ({"sa": {"CasePriority": "high"}}, "CasePriority", {"priority": None}),
    ({"sa": {"CasePriority": 2.5}}, "CasePriority", {"priority": None}),
    ({"sa": {"CaseUpdatedAt": "garbage"}}, "CaseUpdatedAt", {"updated_at": None}),
    ({"sa": {"CaseUpdatedAt": 1700000000}}, "CaseUpdatedAt", {"updated_at": None}),
    ({"sa": {"CaseDueAt": "0001-01-01T00:00:00+05:00"}}, "CaseDueAt", {"due_at": None}),
    ({"sa": {"CaseAssignee": ["alice"]}}, "CaseAssignee", {"assignee": None}),
    ({"sa": {"CaseTitle": {"text": "x"}}}, "CaseTitle", {"title": ""}),
    ({"sa": {"CaseStatus": 5}}, "CaseStatus", {"status": "new"}),
    ({"sa": {"CaseQueue": 5}}, "CaseQueue", {"queue": ""}),
    ({"sa": {"CaseSlaBreached": "yes"}}, "CaseSlaBreached", {"sla_breached": False}),
    ({"raw": {"CaseTitle": b"\xff\xfe"}}, "CaseTitle", {"title": ""}),
    ({"raw": {"CxOdd": b"{not json"}}, "CxOdd", {"attributes": {"CxOdd": None}}),
])
def test_a_field_of_the_wrong_shape_is_its_default_and_named(info_args, field, expect, caplog):
    case_id = new_case_id()
    caplog.set_level(logging.WARNING, logger="cases.temporal.rows")
    row = decode_row(_info(case_id, **info_args))
    for name, value in expect.items():
        assert getattr(row, name) == value, name
    assert field in row.unreadable
    # Everything else on the row is still read.
    assert row.case_id == case_id and row.run_id == "run-1"
    assert row.started_at == datetime(2030, 1, 1, tzinfo=UTC)
    if not field.startswith("row"):
        assert row.version == 3 and row.requester == "Ada"
    if field != "CaseTitle":
        assert row.title == "Printer on fire"
    [line] = _named(caplog, case_id)
    assert field in line


def test_a_well_formed_row_reads_whole_and_logs_nothing(caplog):
    case_id = new_case_id()
    caplog.set_level(logging.WARNING, logger="cases.temporal.rows")
    row = decode_row(_info(case_id, sa={"CasePriority": 2.0, "CaseTags": "solo",
                                         "CaseUpdatedAt": "2030-01-01T00:00:00"}))
    assert (row.priority, row.tags, row.version, row.comments) == (2, ["solo"], 3, 2)
    assert row.updated_at == datetime(2030, 1, 1, tzinfo=UTC)  # no offset: UTC
    assert row.due_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row.unreadable == () and _named(caplog, case_id) == []


def test_odd_times_and_statuses_from_the_server_are_named_too(caplog):
    case_id = new_case_id()
    info = _info(case_id)
    info.status = 99  # a status newer than this SDK
    info.close_time.seconds = 2**62
    row = decode_row(info)
    assert (row.execution_status, row.closed_at) == ("unknown", None)
    assert {"ExecutionStatus", "CloseTime"} <= set(row.unreadable)


def test_a_bad_row_is_logged_once_however_often_it_is_read(caplog):
    case_id = new_case_id()
    caplog.set_level(logging.WARNING, logger="cases.temporal.rows")
    info = _info(case_id, memo={"version": "banana"})
    for _ in range(3):
        decode_row(info)
    assert len(_named(caplog, case_id)) == 1


def test_the_feed_skips_a_row_it_cannot_order_and_publishes_the_rest(settings, monkeypatch,
                                                                     caplog):
    """Rows that do not come from _row (a hand-made one here) cannot stop a poll either."""
    store = feed._store()
    store.clear()
    log.current().forget()
    good = decode_row(_info(new_case_id(), sa={"CaseUpdatedAt": _iso(datetime.now(UTC))}))
    odd = decode_row(_info(new_case_id()))
    odd.version = "banana"

    async def listing(query: str, page_size: int, token: str | None = None, **kw: Any):
        return gateway.CasePage([odd, good])

    monkeypatch.setattr(gateway, "list_cases", listing)
    caplog.set_level(logging.WARNING, logger="cases.live.feed")
    assert run(feed.Poller().poll_once()) == 1
    assert good.case_id in _published() and odd.case_id not in _published()
    assert _named(caplog, odd.case_id)
    assert wire.load(wire.TIME, store.get(feed.KEY_WATERMARK)) == good.updated_at


# --- showing values of any type -------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "shown"), [
    ("Int", "lots", "lots"),
    ("Int", {"a": [1, 2]}, '{"a": [1, 2]}'),
    ("Int", [1, {"b": None}], '1, {"b": null}'),
    ("Int", 10**40, str(10**40)),
    pytest.param("Int", 10**5000, "(unreadable)", id="past-str-digit-limit"),
    ("Int", None, ""),
    ("Double", float("nan"), "nan"),
    ("Bool", "no", "no"),  # text, not a truthy Yes
    ("Datetime", "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59-05:00"),
    ("Datetime", "not a date", "not a date"),
    ("Datetime", 12, "12"),
    ("KeywordList", "solo", "solo"),
])
def test_a_custom_value_of_any_type_is_shown_as_far_as_it_can_be_read(kind, value, shown):
    assert display(kind, value) == shown


def test_a_list_row_and_its_export_show_odd_attributes_and_say_what_is_unreadable():
    from cases.config.custom_fields import Attribute
    from cases.templatetags.case_tags import case_row
    from cases.web.export import _cells

    columns = [Attribute(n, k, n, "", (), True, False)
               for n, k in (("CxA", "Int"), ("CxB", "Datetime"), ("CxC", "Bool"))]
    row = decode_row(_info(new_case_id(), memo={"version": "x"}))
    row.attributes = {"CxA": {"deep": [1]}, "CxB": ["x"], "CxC": 10**5000}
    html = case_row(row, columns)
    assert "unreadable fields" in html and "row.version" in html
    assert "{&quot;deep&quot;: [1]}" in html and "(unreadable)" in html
    assert _cells(row, columns)[-3:] == ['{"deep": [1]}', "x", "(unreadable)"]


def test_a_filter_read_in_python_says_maybe_for_a_row_of_odd_types():
    row = decode_row(_info(new_case_id()))
    row.tags, row.due_at = None, "tomorrow"  # as no row from _row has them
    assert CaseFilter(tag="vip").matches(row) is None
    assert CaseFilter(due_before=date(2031, 1, 1)).matches(row) is None
    assert CaseFilter(queues=["general"]).matches(row) is True
