"""Mail in (issue 23), the pipeline both doors call: raw RFC 5322 bytes handed to
`hand_over`, the real dev server and worker behind it. The worker's activities read the
queues from the database on their own threads, so these tests commit (transactional_db)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings

from cases import temporal as gateway
from cases.mailin import tokens
from cases.mailin.pipeline import IntakeUnavailable, hand_over, queue_for_address
from cases.models import EmailDelivery, MailIgnored, MailOpened, Queue, StoredBlob
from cases.notify.deliver import message_id, reply_address
from cases.temporal.ids import new_case_id
from workers import rules
from workers.model import AddComment, CaseInput, Close, NewCase, QueuePolicy, Resolve

from .conftest import current_state, eventually, free_port, run, timeline

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def addresses(transactional_db: Any) -> None:
    """The default queues at their demo addresses (a transactional test's flush removed the
    migration's rows)."""
    for slug in ("billing", "technical", "general"):
        Queue.objects.update_or_create(slug=slug, defaults={
            "name": slug.title(), "email": f"{slug}@example.com"})


def mid() -> str:
    return f"<{uuid.uuid4().hex}@customer.example>"


def mail(*, subject: str = "Refund not received", body: str = "Where is my refund?",
         sender: str = "Ada Lovelace <ada@example.com>", to: str = "billing@example.com",
         message_id: str | None = None, headers: str = "", content_type: str =
         "text/plain; charset=utf-8") -> bytes:
    message_id = mid() if message_id is None else message_id
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
            + (f"Message-ID: {message_id}\r\n" if message_id else "")
            + f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{headers}")
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode()


def opened(raw: bytes, to: str = "billing@example.com") -> str:
    outcome = hand_over(raw, [to], door="smtp")
    assert outcome.done == "opened", outcome
    return outcome.case_id


def test_a_new_mail_opens_a_case_in_the_queue_of_its_address(temporal, addresses):
    raw = mail(subject="Re: Fwd: Invoice shows wrong VAT",
               body="The VAT on invoice 1234 is 25%, it should be 20%.")
    case_id = opened(raw)
    state = current_state(case_id)
    assert (state.title, state.queue) == ("Invoice shows wrong VAT", "billing")
    assert state.description == "The VAT on invoice 1234 is 25%, it should be 20%."
    assert (state.requester.name, state.requester.email) == ("Ada Lovelace", "ada@example.com")
    assert state.created_by == rules.MAIL_ACTOR
    # The whole message is on the case as it was received.
    eml = [a for a in state.attachments if a.file.name == "message.eml"]
    assert len(eml) == 1 and eml[0].file.size == len(raw)
    # The case lives by its queue's rules like any other: due by the settings' SLA.
    assert state.due_at is not None


def test_the_same_mail_twice_opens_one_case(temporal, addresses):
    raw = mail()
    first = hand_over(raw, ["billing@example.com"], door="smtp")
    again = hand_over(raw, ["billing@example.com"], door="imap:billing")
    assert first == again and first.done == "opened"
    assert MailOpened.objects.filter(case_id=first.case_id).count() == 1
    # The second delivery's keep of the .eml was given back: one claim, the case's.
    assert StoredBlob.objects.get(sha256=hashlib.sha256(raw).hexdigest()).claims == 1


def test_a_mail_without_message_id_is_named_by_its_bytes(temporal, addresses):
    raw = mail(message_id="")
    first = hand_over(raw, ["billing@example.com"], door="smtp")
    assert first.done == "opened"
    assert hand_over(raw, ["billing@example.com"], door="smtp").case_id == first.case_id
    other = hand_over(mail(message_id="", body="Another one"), ["billing@example.com"],
                      door="smtp")
    assert other.case_id != first.case_id


def test_addresses_map_to_queues_and_reply_addresses_to_their_case(temporal, addresses):
    assert queue_for_address("Technical@Example.com") == "technical"
    assert queue_for_address("<general@example.com>") == "general"
    assert queue_for_address("nobody@example.com") is None
    assert queue_for_address("not an address") is None
    case_id = opened(mail(), "billing@example.com")
    assert queue_for_address(reply_address(case_id)) == "billing"
    # A forged token is ours to read but names no case: it opens one in MAIL_REPLY_QUEUE.
    forged = reply_address(case_id).replace(tokens.signature(case_id), "a" * 16)
    assert queue_for_address(forged) == django_settings.MAIL_REPLY_QUEUE


def test_a_reply_to_our_signed_address_is_a_public_comment_without_quotes(temporal, addresses):
    case_id = opened(mail())
    reply = mail(subject=f"Re: [{case_id}] Refund not received", to=reply_address(case_id),
                 body="It arrived this morning, thanks!\n\nBest,\nAda\n\n"
                      "On Sun, 6 Dec 2026 at 11:00, Tracerail <tracerail@example.com> wrote:\n"
                      "> We refunded you yesterday.\n> Kind regards\n")
    outcome = hand_over(reply, [reply_address(case_id)], door="smtp")
    assert (outcome.done, outcome.case_id) == ("replied", case_id)
    state = current_state(case_id)
    comment = state.comments[-1]
    assert comment.body == "It arrived this morning, thanks!"
    assert not comment.internal and comment.via == "email"
    assert comment.sender == "Ada Lovelace <ada@example.com>"
    # The full text one click away: the message as received.
    original = next(a for a in state.attachments if a.id == comment.original)
    assert original.file.size == len(reply)


def test_a_reply_from_someone_else_is_an_internal_note_naming_them(temporal, addresses):
    case_id = opened(mail())
    reply = mail(sender="Bob Builder <bob@elsewhere.example>", to=reply_address(case_id),
                 subject="Re: Refund", body="I am Ada's accountant; the refund is missing.")
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    comment = current_state(case_id).comments[-1]
    assert comment.internal
    assert "Bob Builder <bob@elsewhere.example>" in comment.body
    assert "the refund is missing" in comment.body


def test_the_same_reply_twice_is_one_comment(temporal, addresses):
    case_id = opened(mail())
    reply = mail(to=reply_address(case_id), body="Any news?")
    first = hand_over(reply, [reply_address(case_id)], door="smtp")
    again = hand_over(reply, [reply_address(case_id)], door="imap:billing")
    assert first.done == again.done == "replied"
    assert [c.body for c in current_state(case_id).comments] == ["Any news?"]


def test_the_same_reply_after_the_case_continued_as_new_is_still_one_comment(
        temporal, addresses):
    """Temporal dedupes an Update id within one run only: the rule refuses a Message-ID the
    case already has."""
    case_id, first_run = _long_case(temporal)
    reply = mail(to=reply_address(case_id), body="First words")
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    _continue(temporal, case_id, first_run)
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    bodies = [c.body for c in current_state(case_id).comments]
    assert bodies.count("First words") == 1


def test_a_forged_token_opens_a_new_case(temporal, addresses):
    case_id = opened(mail())
    forged = reply_address(case_id).replace(tokens.signature(case_id), "b" * 16)
    outcome = hand_over(mail(to=forged, subject=f"Re: [{case_id}] hi", body="Let me in"),
                        [forged], door="smtp")
    assert outcome.done == "opened" and outcome.case_id != case_id
    assert current_state(case_id).comments == []
    # A bare case id (no signature) in the subject appends to nothing either.
    outcome = hand_over(mail(subject=f"Re: [{case_id}] hi", body="Me too"),
                        ["billing@example.com"], door="smtp")
    assert outcome.done == "opened" and outcome.case_id != case_id
    assert current_state(case_id).comments == []


def test_a_signed_subject_tag_matches(temporal, addresses):
    case_id = opened(mail())
    reply = mail(subject=f"Re: [{tokens.token(case_id)}] Refund", body="Tagged")
    assert hand_over(reply, ["billing@example.com"], door="smtp").case_id == case_id


def test_in_reply_to_a_message_we_sent_to_that_sender_matches_and_to_another_not(
        temporal, addresses):
    case_id = opened(mail())
    sent = f"<{case_id}.v123456789abc.def012345678@127.0.0.1>"
    EmailDelivery.objects.create(message_id=sent, case_id=case_id, events="2",
                                 recipient="ada@example.com")
    reply = mail(to="billing@example.com", body="Replying in my client",
                 headers=f"In-Reply-To: {sent}\r\nReferences: {sent}\r\n")
    outcome = hand_over(reply, ["billing@example.com"], door="smtp")
    assert (outcome.done, outcome.case_id) == ("replied", case_id)
    # Someone else quoting the same Message-ID did not receive it: a new case.
    stranger = mail(sender="eve@evil.example", body="Injected",
                    headers=f"In-Reply-To: {sent}\r\n")
    other = hand_over(stranger, ["billing@example.com"], door="smtp")
    assert other.done == "opened" and other.case_id != case_id
    assert [c.body for c in current_state(case_id).comments] == ["Replying in my client"]


@pytest.mark.parametrize(("extra", "sender", "reason"), [
    ("Auto-Submitted: auto-replied\r\n", "ada@example.com", "Auto-Submitted"),
    ("Precedence: bulk\r\n", "ada@example.com", "Precedence: bulk"),
    ("Precedence: list\r\n", "ada@example.com", "Precedence: list"),
    ("", "MAILER-DAEMON@mx.example.com", "bounce"),
    ("", "postmaster@mx.example.com", "bounce"),
    ("", "Tracerail <tracerail@example.com>", "our own mail"),
])
def test_noise_opens_nothing_and_is_listed(temporal, addresses, extra, sender, reason):
    message_id = mid()
    outcome = hand_over(mail(sender=sender, headers=extra, message_id=message_id),
                        ["billing@example.com"], door="smtp")
    assert outcome.done == "ignored" and outcome.case_id == "" and reason in outcome.reason
    row = MailIgnored.objects.get(message_id=message_id)
    assert reason in row.reason and not row.held and row.door == "smtp"
    # Fetched again by another door: the same outcome, counted once.
    again = hand_over(mail(sender=sender, headers=extra, message_id=message_id),
                      ["billing@example.com"], door="imap:billing")
    assert again == outcome and MailIgnored.objects.filter(message_id=message_id).count() == 1
    assert not MailOpened.objects.exists()


def test_a_delivery_report_and_a_reply_to_our_own_message_id_domain_are_ignored(
        temporal, addresses):
    report = mail(content_type='multipart/report; report-type=delivery-status; boundary="b"',
                  body="--b\nContent-Type: text/plain\n\nUndeliverable\n--b--\n")
    assert hand_over(report, ["billing@example.com"], door="smtp").done == "ignored"
    looped = mail(message_id=message_id("case-AAAAAAAA", ["3"], "ada@example.com"))
    assert hand_over(looped, ["billing@example.com"], door="smtp").reason == "our own mail"
    # An auto-reply to one of our reply addresses adds nothing to the case either.
    case_id = opened(mail())
    auto = mail(to=reply_address(case_id), headers="Auto-Submitted: auto-replied\r\n",
                body="I am out of office")
    assert hand_over(auto, [reply_address(case_id)], door="smtp").done == "ignored"
    assert current_state(case_id).comments == []


def test_a_reply_to_a_resolved_case_reopens_it(temporal, addresses):
    case_id = opened(mail())
    run(gateway.act(case_id, Resolve(actor="sam", resolution="Refunded")))
    reply = mail(to=reply_address(case_id), body="Still nothing on my account.")
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    state = current_state(case_id)
    assert state.status == "new" and state.resolved_at is None
    assert state.comments[-1].body == "Still nothing on my account."
    assert "reply by mail from Ada Lovelace <ada@example.com>, reopening the case" in [
        e.text for e in timeline(case_id)]


def _long_case(temporal: Any) -> tuple[str, str]:
    """A case that continues as new after 25 events; its id and first run's id."""
    case_id = new_case_id()
    handle = run(temporal.client.start_workflow(
        "Case", CaseInput(case_id=case_id, actor="intake",
                          new=NewCase(title="Long", queue="general",
                                      requester_email="ada@example.com"),
                          policy=QueuePolicy("general"), history_event_limit=25),
        id=case_id, task_queue=django_settings.TEMPORAL_TASK_QUEUE))
    return case_id, str(handle.result_run_id)


def _continue(temporal: Any, case_id: str, first_run: str) -> None:
    for i in range(6):
        run(gateway.act(case_id, AddComment(actor="sam", body=f"note {i}")))

    def continued() -> None:
        assert run(temporal.client.get_workflow_handle(case_id).describe()).run_id != first_run

    eventually(continued, timeout=20)


def test_a_reply_delivered_again_after_its_case_closed_is_not_a_follow_up(temporal,
                                                                          addresses):
    """Temporal answers a repeated Update id on a closed run, but not one of an earlier run:
    the closed case's history is asked."""
    case_id, first_run = _long_case(temporal)
    reply = mail(to=reply_address(case_id), body="Thanks, all good.")
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    _continue(temporal, case_id, first_run)
    run(gateway.act(case_id, Close(actor="sam")))
    again = hand_over(reply, [reply_address(case_id)], door="imap:billing")
    assert (again.done, again.case_id) == ("replied", case_id)
    assert not MailOpened.objects.exclude(case_id=case_id).exists()


def test_a_reply_to_a_closed_case_opens_a_follow_up_naming_it(temporal, addresses):
    case_id = opened(mail())
    run(gateway.act(case_id, Close(actor="sam")))
    reply = mail(to=reply_address(case_id), body="It happened again.")
    outcome = hand_over(reply, [reply_address(case_id)], door="smtp")
    assert outcome.done == "opened" and outcome.case_id != case_id
    follow_up = current_state(outcome.case_id)
    assert follow_up.follows == case_id and follow_up.queue == "billing"
    assert case_id in follow_up.description and "It happened again." in follow_up.description
    # The same reply again: the same follow-up, no second one.
    assert hand_over(reply, [reply_address(case_id)], door="smtp") == outcome


def test_html_only_mail_becomes_text_without_script_or_style(temporal, addresses):
    html = ("<html><head><style>p { color: red }</style><title>T</title></head><body>"
            "<p>Hello&nbsp;there,</p><script>alert('x')</script><p>my <b>invoice</b> is "
            "wrong.</p></body></html>")
    case_id = opened(mail(content_type="text/html; charset=utf-8", body=html))
    description = current_state(case_id).description
    assert description == "Hello there,\n\nmy invoice is wrong."
    assert "alert" not in description and "color" not in description


def _many_parts(n: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(n))
    return mail(content_type='multipart/mixed; boundary="b"', body=parts + "--b--\r\n")


@pytest.mark.parametrize("raw", [
    pytest.param(_many_parts(10_000), id="10000-parts"),
    pytest.param(mail(headers="X-Huge: " + "a" * 1_000_000 + "\r\n"), id="1MB-header"),
    pytest.param(mail(content_type="text/plain; charset=x-no-such-charset",
                      body="caf\xe9").replace(b"caf\xc3\xa9", b"caf\xe9\xff"),
                 id="bad-charset"),
    pytest.param(mail(content_type='multipart/mixed; boundary="never"',
                      body="no boundary at all\r\n"), id="broken-mime"),
    pytest.param(b"\x00\xff garbage without headers", id="garbage"),
])
def test_malformed_mail_is_a_degraded_case_or_ignored_never_an_exception(
        temporal, addresses, raw):
    outcome = hand_over(raw, ["billing@example.com"], door="smtp")
    assert outcome.done in ("opened", "degraded", "ignored"), outcome
    if outcome.case_id:
        state = current_state(outcome.case_id)
        assert len(state.description) <= rules.MAX_DESCRIPTION
        assert state.queue == "billing"


def test_a_1mb_header_is_noted_and_the_case_degraded(temporal, addresses):
    outcome = hand_over(mail(headers="X-Huge: " + "a" * 1_000_000 + "\r\n",
                             body="Readable"), ["billing@example.com"], door="smtp")
    assert outcome.done == "degraded" and "X-Huge" in outcome.reason
    assert current_state(outcome.case_id).description.startswith("Readable")


def test_temporal_unreachable_is_intake_unavailable(temporal, addresses, settings):
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    gateway.reset_client()
    try:
        with pytest.raises(IntakeUnavailable):
            hand_over(mail(), ["billing@example.com"], door="smtp")
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()
    # Nothing counted against the sender: their retry is the first case.
    assert not MailOpened.objects.exists()


def test_a_sender_over_the_rate_is_held(temporal, addresses, settings):
    settings.MAIL_SENDER_CASES_PER_MINUTE = 2
    sender = "flood@example.com"
    done = [hand_over(mail(sender=sender, body=f"mail {i}"), ["billing@example.com"],
                      door="smtp").done for i in range(3)]
    assert done == ["opened", "opened", "held"]
    row = MailIgnored.objects.get(held=True)
    assert row.sender == sender and "held" in row.reason
    # Another sender is not held.
    assert hand_over(mail(), ["billing@example.com"], door="smtp").done == "opened"


def test_the_ignored_list_is_bounded(temporal, addresses, settings):
    settings.MAIL_IGNORED_KEEP = 5
    for _ in range(110):
        hand_over(mail(headers="Precedence: junk\r\n"), ["billing@example.com"], door="smtp")
    assert 5 <= MailIgnored.objects.count() <= 105


def test_a_customer_at_our_own_domain_is_not_our_own_mail(temporal, addresses):
    raw = mail(message_id="<CAF12345@127.0.0.1>", body="Same host, a person")
    assert hand_over(raw, ["billing@example.com"], door="smtp").done == "opened"


def test_a_reply_address_is_unavailable_rather_than_refused_while_temporal_is_away(
        temporal, addresses, settings):
    case_id = opened(mail())
    settings.TEMPORAL_ADDRESS = f"127.0.0.1:{free_port()}"
    gateway.reset_client()
    try:
        with pytest.raises(IntakeUnavailable):
            queue_for_address(reply_address(case_id))
        # Queue addresses need no Temporal.
        assert queue_for_address("billing@example.com") == "billing"
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()


def test_admins_see_ignored_mail_with_its_reason_read_only(temporal, addresses, admin_user):
    from .conftest import logged_in

    hand_over(mail(sender="MAILER-DAEMON@mx.example.com"), ["billing@example.com"],
              door="smtp")
    client = logged_in(admin_user)
    page = client.get("/admin/cases/mailignored/")
    assert page.status_code == 200
    assert b"mailer-daemon@mx.example.com" in page.content.lower()
    assert b"a bounce" in page.content
    assert client.get("/admin/cases/mailignored/add/").status_code == 403


def test_one_queue_per_address_whatever_its_case(addresses):
    from django.core.exceptions import ValidationError

    clash = Queue(slug="refunds", name="Refunds", email="Billing@Example.com")
    with pytest.raises(ValidationError, match="Another queue answers at this address"):
        clash.full_clean()
    # Any number of queues without an address.
    Queue.objects.create(slug="a-none", name="A")
    Queue(slug="b-none", name="B").full_clean()


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _with_attachments(*files: tuple[str, str, bytes], **fields: Any) -> bytes:
    import base64

    parts = "--b\nContent-Type: text/plain; charset=utf-8\n\n" + \
        fields.pop("body", "See attached.") + "\n"
    for name, kind, data in files:
        encoded = base64.encodebytes(data).decode()
        parts += (f"--b\nContent-Type: {kind}\nContent-Transfer-Encoding: base64\n"
                  f'Content-Disposition: attachment; filename="{name}"\n\n{encoded}\n')
    return mail(content_type='multipart/mixed; boundary="b"', body=parts + "--b--\n",
                **fields)


def test_a_reply_brings_its_attachments_to_its_comment(temporal, addresses):
    case_id = opened(mail())
    reply = _with_attachments(("screenshot.png", "image/png", PNG),
                              to=reply_address(case_id), body="Here is the screen.")
    assert hand_over(reply, [reply_address(case_id)], door="smtp").done == "replied"
    state = current_state(case_id)
    comment = state.comments[-1]
    assert comment.body == "Here is the screen."
    files = {a.id: a.file for a in state.attachments}
    assert [files[i].name for i in comment.attachments] == ["screenshot.png"]
    assert files[comment.attachments[0]].size == len(PNG)
    assert files[comment.original].name == "message.eml"


def test_a_refused_attachment_is_skipped_with_a_note_not_the_mail(temporal, addresses):
    program = b"MZ\x90\x00\x03" + b"\x00" * 200  # a Windows executable
    raw = _with_attachments(("setup.exe", "application/octet-stream", program),
                            ("screenshot.png", "image/png", PNG), body="Install this")
    case_id = opened(raw)
    state = current_state(case_id)
    assert state.description.startswith("Install this")
    assert "setup.exe not kept" in state.description
    assert sorted(a.file.name for a in state.attachments) == ["message.eml", "screenshot.png"]


def test_migration_gives_the_demo_addresses_and_postgresql_holds_one_queue_per_address(
        postgres_server, tmp_path):
    from psycopg.errors import UniqueViolation

    url, _ = postgres_server.migrated(tmp_path)
    with postgres_server.connect(url) as db:
        found = dict(db.execute("SELECT slug, email FROM cases_queue").fetchall())
        assert found == {"billing": "billing@example.com",
                         "technical": "technical@example.com",
                         "general": "general@example.com"}
        update = "UPDATE cases_queue SET email = %s WHERE slug = %s"
        with pytest.raises(UniqueViolation):
            db.execute(update, ("BILLING@Example.com", "general"))
        db.execute(update, ("", "general"))
        db.execute(update, ("", "technical"))  # any number without an address


def test_a_mail_fetched_from_a_queue_s_mailbox_opens_its_case_there(temporal, addresses):
    raw = mail(to="someone@hosted.example", body="Fetched over IMAP")
    outcome = hand_over(raw, ["billing@example.com"], door="imap:technical")
    assert current_state(outcome.case_id).queue == "technical"


def test_mime_nested_past_the_recursion_limit_still_opens_a_case_for_its_sender(
        temporal, addresses):
    nested = "".join(f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n'
                     for i in range(5000))
    raw = mail(content_type='multipart/mixed; boundary="b0"', body=nested,
               subject="Nested")
    outcome = hand_over(raw, ["billing@example.com"], door="smtp")
    assert outcome.done == "degraded" and "could not be parsed" in outcome.reason
    state = current_state(outcome.case_id)
    assert (state.title, state.requester.email) == ("Nested", "ada@example.com")
