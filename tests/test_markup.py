"""The hand-assembled markup (list rows, comments) escapes every value."""

from __future__ import annotations

from datetime import UTC, datetime

from cases.config.custom_fields import Attribute
from cases.templatetags.case_tags import case_comments, case_row
from cases.temporal import CaseRow
from workers.model import Comment

EVIL = '"><script>alert(1)</script>&'
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_case_row_escapes_everything_and_keeps_structure(db):
    row = CaseRow(case_id="case-AAAAAAAA", title=EVIL, status="new", priority=1, queue=EVIL,
                  assignee=EVIL, tags=[EVIL], due_at=NOW, updated_at=NOW, sla_breached=True,
                  started_at=NOW, execution_status="running", requester=EVIL,
                  attributes={"Region": EVIL})
    column = Attribute("Region", "Keyword", "Region", "", (), True, False)
    html = case_row(row, [column], oob=True)
    assert "<script>" not in html and EVIL not in html
    # title (text and hover), tag, requester, queue, assignee, column
    assert html.count("&lt;script&gt;") == 7
    assert html.startswith('<tr id="row-case-AAAAAAAA" class="case-row breached" '
                           'hx-swap-oob="true">')
    # One link per row, the title's; the id folded into the title's cell (issue 26).
    assert html.count("<a ") == 1 and '<a href="/cases/case-AAAAAAAA/" title=' in html
    assert '<span class="case-id"><span class="id-prefix">case-</span>AAAAAAAA</span>' in html
    assert '<span class="breach">breached</span>' in html
    assert html.endswith("</tr>") and html.count("<td") == 9


def test_comments_escape(db):
    comments = [Comment(author=EVIL, body=f"line one\n{EVIL}", internal=True, at=NOW)]
    html = case_comments(comments)
    assert "<script>" not in html and "line one<br>" in html
    assert 'class="comment internal"' in html and "Internal" in html


def test_ended_rows_say_when_and_how(db):
    row = CaseRow(case_id="case-AAAAAAAA", title="t", status="in_progress", priority=1,
                  queue="q", assignee=None, tags=[], due_at=NOW, updated_at=NOW,
                  sla_breached=True, started_at=NOW, execution_status="terminated",
                  closed_at=NOW)
    html = case_row(row)
    assert '<span class="muted">ended <time datetime="2026-11-26T09:00:00+00:00" title="' in html
    assert '<span class="badge warn">terminated</span>' in html and "breached</span>" not in html


def test_a_row_without_a_title_still_names_its_link(db):
    """A case any Temporal client started with a blank title listed as a link with no text
    (axe link-name: test_browser_a11y failed whenever it ran after test_trust)."""
    row = CaseRow(case_id="case-BBBBBBBB", title="  ", status="new", priority=3,
                  queue="general", assignee=None, tags=[], due_at=None, updated_at=NOW,
                  sla_breached=False, started_at=NOW, execution_status="running")
    html = case_row(row, [])
    assert '<a href="/cases/case-BBBBBBBB/" title="  "><span class="muted">(no title)</span></a>' \
        in html
