"""The one query builder: typed, quoted, and never broader than asked — proven on the server."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import temporal as gateway
from cases.temporal.visibility import BASE, NOTHING, CaseFilter, InvalidFilter, quote, title_words

from .conftest import eventually, run

HOSTILE = [
    "'", "\\", "\\'", '"', "' OR '1'='1", "OR 1=1", "x' OR CaseQueue != '", ") OR (1=1",
    "%", "_", "*", "--", "/*", ";", "`", "\u2028", "é", "😀", "日本語", "NULL", "IS NULL",
    "AND", "OR", "NOT", "NEAR", "x" * 10_240, "\x00", "\n", "a\tb", "\x7f",
]
text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60),
                 st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300))


def test_quote_escapes_and_refuses_control_characters():
    assert quote("it's") == "'it\\'s'"
    assert quote("a\\b") == "'a\\\\b'"
    for bad in ("\x00", "a\nb", "\x7f"):
        with pytest.raises(InvalidFilter):
            quote(bad)


def test_builder_shapes():
    query = CaseFilter(statuses=["waiting", "new"], priorities=[2, 1], assignee="none",
                       tag="vip", breached=True, due_before=date(2026, 12, 1),
                       words="Refund, refund INVOICE").query("alice", ["billing"])
    assert query == (
        f"{BASE} AND CaseQueue = 'billing' AND CaseTitle = 'refund' AND CaseTitle = 'invoice' "
        "AND CaseStatus IN ('new', 'waiting') AND CasePriority IN (1, 2) "
        "AND CaseAssignee IS NULL AND CaseTags = 'vip' AND CaseSlaBreached = true "
        "AND CaseDueAt < '2026-12-01T00:00:00Z'"
    )
    assert CaseFilter(assignee="me").query("alice") == f"{BASE} AND CaseAssignee = 'alice'"
    assert CaseFilter().query(visible_queues=[]) == f"{BASE} AND {NOTHING}"


@pytest.mark.parametrize(
    "bad",
    [CaseFilter(statuses=["open' OR '1'='1"]), CaseFilter(priorities=[0]),
     CaseFilter(queues=["Billing'"]), CaseFilter(assignee="a b"), CaseFilter(tag="a'b"),
     CaseFilter(words=" ".join(f"w{i}" for i in range(9))), CaseFilter(words="x" * 65)],
)
def test_builder_refuses_values_of_the_wrong_type(bad):
    with pytest.raises(InvalidFilter):
        bad.query("alice")


def test_title_words_split_on_punctuation():
    assert title_words("it's a \"refund\" OR 1=1") == ["it", "s", "a", "refund", "or", "1"]


@pytest.fixture(scope="module")
def corpus(temporal, django_db_blocker):
    """A few cases with awkward titles, tags and assignees for the property tests."""
    from cases.temporal.ids import new_case_id
    from workers.model import Claim, NewCase

    made = []
    for title, tag, who in [("It's a \"refund\" OR 1=1", "vip", "o.brien"),
                            ("Plain refund request", "refund", None),
                            ("Ünïcode 日本語 title", "intl", "user_1")]:
        case_id = new_case_id()
        run(gateway.start_case(case_id, NewCase(title=title, queue="general", tags=[tag]),
                               "intake"))
        if who:
            run(gateway.act(case_id, Claim(actor=who)))
        made.append(case_id)
    eventually(lambda: _assert(run(gateway.count_cases(
        f"{BASE} AND WorkflowId IN ({', '.join(quote(c) for c in made)})")) == 3))
    return made


def _assert(ok: bool) -> None:
    assert ok


def _rows(case_filter: CaseFilter) -> list[gateway.CaseRow] | None:
    """Rows for the filter, or None if the builder refused it (with a message)."""
    try:
        query = case_filter.query("alice", ["general", "billing"])
    except InvalidFilter as err:
        assert str(err)
        return None
    # Never "invalid query" from the server: both List and Count accept what we build.
    rows = run(gateway.list_cases(query, 100)).rows
    assert run(gateway.count_cases(query)) >= len(rows)
    for row in rows:
        assert row.queue in ("general", "billing")  # the access clause always holds
    return rows


PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(value=text)
def test_hostile_title_words_never_broaden(corpus, value):
    rows = _rows(CaseFilter(words=value))
    if rows is None:
        return
    words = {_fold(w) for w in title_words(value)}
    for row in rows:
        row_words = {_fold(w) for w in title_words(row.title)}
        assert words <= row_words, (value, row.title)


def _fold(word: str) -> str:
    """The index's notion of equal words: case- and diacritic-insensitive (unicode61)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@PROPERTY
@given(value=text)
def test_hostile_assignee_never_broadens(corpus, value):
    rows = _rows(CaseFilter(assignee=value))
    if rows is None:
        return
    if value not in ("", "me", "none"):
        assert all(row.assignee == value for row in rows)


@PROPERTY
@given(value=text)
def test_hostile_tag_never_broadens(corpus, value):
    rows = _rows(CaseFilter(tag=value))
    if rows is None or not value:
        return
    assert all(value in row.tags for row in rows)


@PROPERTY
@given(statuses=st.lists(text, max_size=3), queues=st.lists(text, max_size=3))
def test_hostile_lists_are_refused_or_exact(corpus, statuses, queues):
    rows = _rows(CaseFilter(statuses=statuses, queues=queues))
    if rows is None:
        return
    for row in rows:
        assert not statuses or row.status in statuses
        assert not queues or row.queue in queues


def test_quote_in_keyword_round_trips_on_the_server(corpus):
    rows = _rows(CaseFilter(assignee="o.brien"))
    assert rows is not None and [r.title for r in rows] == ["It's a \"refund\" OR 1=1"]
    rows = _rows(CaseFilter(words="1=1 OR"))
    assert rows is not None and len(rows) == 1


# --- the archive's query languages (docs/archival.md) ------------------------------------------


def test_archived_queries_speak_each_archivers_language():
    from cases.temporal.visibility import archived_queries

    day, next_day = date(2026, 3, 5), date(2026, 3, 6)
    assert archived_queries("file:///var/archive", "case-7K2M9QXA", day, day) == [
        "WorkflowId = 'case-7K2M9QXA' AND CloseTime >= '2026-03-05T00:00:00Z' "
        "AND CloseTime < '2026-03-06T00:00:00Z'"]
    assert archived_queries("file:///a", "", None, None) == ["WorkflowType = 'Case'"]
    # S3 and GCS: equality only, one UTC day per query, with its precision.
    assert archived_queries("s3://bucket/vis", "case-7K2M9QXA", day, next_day) == [
        "WorkflowId = 'case-7K2M9QXA' AND CloseTime = '2026-03-05T00:00:00Z' "
        "AND SearchPrecision = 'Day'",
        "WorkflowId = 'case-7K2M9QXA' AND CloseTime = '2026-03-06T00:00:00Z' "
        "AND SearchPrecision = 'Day'"]
    assert archived_queries("s3://bucket/vis", "case-7K2M9QXA", None, None) == [
        "WorkflowId = 'case-7K2M9QXA'"]
    with pytest.raises(InvalidFilter, match="close-time range"):
        archived_queries("gs://bucket/vis", "case-7K2M9QXA", None, None)
    assert len(archived_queries("gs://bucket/vis", "", day, None)) == 1
    with pytest.raises(InvalidFilter, match="at most 31 days"):
        archived_queries("s3://b/v", "", date(2026, 1, 1), date(2026, 3, 1))
    for hostile in ("x' OR '1'='1", "case-7K2M9QXA' OR 1=1", "CASE-7K2M9QXA"):
        with pytest.raises(InvalidFilter):
            archived_queries("file:///a", hostile, None, None)
    with pytest.raises(InvalidFilter, match="ends before"):
        archived_queries("file:///a", "", next_day, day)
