"""Issue 23, writing to the customer from the case page: the comment box's two explicit modes
(public reply / internal note), the queue's default mode, the button naming who receives it,
mail in and out shown on the conversation, and opening a case marking its notices read."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from cases import temporal as gateway
from cases.templatetags.case_tags import case_comments
from workers.model import AddComment, Attachment, Authority, Comment, FileRef

from .conftest import eventually, logged_in, run
from .test_notifications import _open, people, smtp  # noqa: F401 (fixtures)

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _checked_mode(page: str) -> str:
    """The value of the checked mode radio of the comment box."""
    radios = re.findall(r'<input type="radio" name="comment-internal"[^>]*>', page)
    assert len(radios) == 2, radios
    [checked] = [r for r in radios if " checked" in r]
    return re.search(r'value="(\w+)"', checked).group(1)


def test_the_send_button_names_the_requester_escaped(agent_client, open_case):
    case_id = open_case(requester_name='Ada "<b>bold</b>"', requester_email="ada@example.com")
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert ("Send to Ada &quot;&lt;b&gt;bold&lt;/b&gt;&quot; &lt;ada@example.com&gt;</span>"
            in page)
    assert "<b>bold</b>" not in page
    assert '<span class="when-internal">Add internal note</span>' in page
    assert "Public reply" in page and "Internal note" in page
    assert _checked_mode(page) == "false"  # the demo queues start public


def test_without_a_requester_email_the_public_button_says_it_is_not_mailed(
        agent_client, open_case):
    case_id = open_case(requester_name="Walk-in")
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert "Add public comment (no requester email)" in page
    assert "Send to" not in page


def test_the_internal_mode_posts_an_internal_note_and_the_public_mode_a_reply(
        agent_client, open_case):
    case_id = open_case(requester_email="ada@example.com")
    agent_client.post(f"/cases/{case_id}/comment/", {
        "comment-version": "1", "comment-body": "Between us", "comment-internal": "true"})
    agent_client.post(f"/cases/{case_id}/comment/", {
        "comment-version": "2", "comment-body": "Dear Ada", "comment-internal": "false"})
    comments = run(gateway.get_case(case_id)).comments
    assert [(c.body, c.internal) for c in comments] == [("Between us", True),
                                                        ("Dear Ada", False)]


def test_an_unknown_mode_is_a_form_error_not_a_reply(agent_client, open_case):
    case_id = open_case(requester_email="ada@example.com")
    response = agent_client.post(f"/cases/{case_id}/comment/", {
        "comment-version": "1", "comment-body": "Hm", "comment-internal": "maybe"})
    assert response.status_code == 400
    assert run(gateway.get_case(case_id)).comments == []


def test_the_queues_default_mode_is_honoured(agent_client, open_case):
    from cases.models import Queue

    technical = Queue.objects.get(slug="technical")
    technical.reply_default = Queue.INTERNAL
    technical.save()  # through the admin's path: the cached configuration follows
    internal = open_case(queue="technical", requester_email="ada@example.com")
    public = open_case(queue="general", requester_email="ada@example.com")
    assert _checked_mode(agent_client.get(f"/cases/{internal}/").content.decode()) == "true"
    assert _checked_mode(agent_client.get(f"/cases/{public}/").content.decode()) == "false"
    technical.reply_default = Queue.PUBLIC
    technical.save()
    assert _checked_mode(agent_client.get(f"/cases/{internal}/").content.decode()) == "false"


def test_a_mail_received_says_from_whom_and_links_the_whole_message(db):
    eml = Attachment(id="a1", file=FileRef("message.eml", 2048, "message/rfc822", "0" * 64,
                                           "k"), by="ada@example.com", at=NOW, comment=0)
    shot = Attachment(id="a2", file=FileRef("shot.png", 4096, "image/png", "1" * 64, "k2"),
                      by="ada@example.com", at=NOW, comment=0)
    comments = [Comment(author="ada@example.com", body="It still <jams>", internal=False,
                        at=NOW, attachments=["a1", "a2"], via="email",
                        sender="Ada <ada@example.com>", original="a1")]
    html = case_comments(comments, "case-AAAAAAAA", [eml, shot])
    assert "Received by email from Ada &lt;ada@example.com&gt;" in html
    assert '<a href="/cases/case-AAAAAAAA/attachments/a1/" download>Full message</a>' in html
    assert 'src="/cases/case-AAAAAAAA/attachments/a2/preview/"' in html  # its screenshot
    assert "It still &lt;jams&gt;" in html and "Sent to" not in html


@pytest.mark.django_db(transaction=True)
def test_a_public_comment_mailed_to_the_requester_says_sent_to(smtp, people,  # noqa: F811
                                                                temporal):
    bob = Authority(role="agent", queues=["technical"])
    case_id = _open(requester_name="Ada", requester_email="ada@example.net")
    run(gateway.act(case_id, AddComment(actor="bob", body="We are on it.", authority=bob)))
    run(gateway.act(case_id, AddComment(actor="bob", body="Psst", internal=True,
                                        authority=bob)))
    eventually(lambda: smtp.to("ada@example.net", case_id) or None, timeout=20)
    client = logged_in(people["bob"])

    def sent_line() -> str:
        page = client.get(f"/cases/{case_id}/").content.decode()
        assert page.count("Sent to ada@example.net") == 1, "not yet"
        return page

    page = eventually(sent_line, timeout=20, interval=0.2)
    # Under the public comment, not the internal note.
    reply = page[page.index("We are on it."):page.index("Psst")]
    assert "Sent to ada@example.net" in reply
    # From the live state the delivery marked: a case page reads no history to say it (it
    # read the whole history on every render, refreshes and pushes included).
    from .conftest import settled_visibility_calls

    history = ("GetWorkflowExecutionHistory",)
    before = settled_visibility_calls(temporal, operations=history)
    for _ in range(3):
        assert "Sent to ada@example.net" in client.get(f"/cases/{case_id}/").content.decode()
    assert settled_visibility_calls(temporal, operations=history) == before


@pytest.mark.django_db(transaction=True)
def test_opening_a_case_marks_its_notices_read(people):  # noqa: F811
    from cases.models import Notification

    bob = people["bob"]
    case_id = _open()
    other = _open()
    for case, event in ((case_id, "2"), (case_id, "3"), (other, "2")):
        Notification.objects.create(user=bob, case_id=case, queue="technical", event=event,
                                    kind="watching")
    client = logged_in(bob)
    assert client.get("/notifications/badge.json").json() == {"unread": 3}
    # A live refresh is not opening the case.
    client.get(f"/cases/{case_id}/?since=0", HTTP_HX_REQUEST="true")
    assert client.get("/notifications/badge.json").json() == {"unread": 3}
    assert client.get(f"/cases/{case_id}/").status_code == 200
    assert client.get("/notifications/badge.json").json() == {"unread": 1}
    assert set(Notification.objects.filter(read_at__isnull=True)
               .values_list("case_id", flat=True)) == {other}
