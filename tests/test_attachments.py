"""Files on cases (issue 23), on the real dev server and worker: the claim check (bytes in
the store once per SHA-256, references in the workflow), limits, the one access rule for
downloads, previews only of what the bytes say is a raster image, the intake API, and the
requester's mail."""

from __future__ import annotations

import io
import json
import os
import zlib
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from cases import temporal as gateway
from cases.files import store
from cases.models import StoredBlob
from cases.temporal.ids import new_case_id
from workers import rules
from workers.model import (
    AddComment,
    Attach,
    Authority,
    CaseInput,
    Close,
    FileRef,
    NewCase,
    QueuePolicy,
)

from .conftest import _persona, current_state, eventually, logged_in, run, timeline
from .test_notifications import _text, people, smtp  # noqa: F401  (fixtures used by name)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The synchronous test client reads the download's async stream (uvicorn does not).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous"),
]
ALICE = Authority(role="agent", queues=["technical", "general"])


def png(size: int = 0, seed: bytes = b"") -> bytes:
    """A real PNG (1x1), padded past `size` with a private chunk of noise."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes.fromhex("00000001000000010800000000"))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")))
    pad = max(0, size - len(body) - 24)
    body += chunk(b"teXt", seed + os.urandom(pad)) if pad or seed else b""
    return body + chunk(b"IEND", b"")


def upload(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


@pytest.fixture(autouse=True)
def attachment_store(settings: Any, tmp_path: Any) -> Any:
    """A store of its own per test, so counting its files counts this test's."""
    root = tmp_path / "attachments"
    settings.STORAGES = {**settings.STORAGES, "attachments": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(root), "base_url": None}}}
    return root


@pytest.fixture
def alice(temporal: Any) -> Any:
    return logged_in(_persona("alice", "Agent", queues=("technical", "general")))


def blobs() -> int:
    return store.blob_count()


def test_the_same_bytes_twice_are_one_blob(alice, open_case):
    case_id = open_case()
    shot = png(seed=b"same")
    first = alice.post(f"/cases/{case_id}/attach/",
                       {"attach-files": [upload(shot, "screen.png")]})
    assert first.status_code == 302, first.content.decode()[:500]
    second = alice.post(f"/cases/{case_id}/comment/", {
        "comment-body": "Here it is again", "comment-files": [upload(shot, "again.png")]},
        HTTP_HX_REQUEST="true")
    assert second.status_code == 200 and "Comment: done." in second.content.decode()
    state = current_state(case_id)
    assert [(a.id, a.file.name, a.comment) for a in state.attachments] == [
        ("a1", "screen.png", None), ("a2", "again.png", 0)]
    assert state.comments[0].attachments == ["a2"]
    assert state.attachments[0].file.sha256 == state.attachments[1].file.sha256
    assert state.attachments[0].file.content_type == "image/png"  # sniffed
    assert blobs() == 1
    assert StoredBlob.objects.get().claims == 2
    page = alice.get(f"/cases/{case_id}/").content.decode()
    assert f'href="/cases/{case_id}/attachments/a1/"' in page and "screen.png" in page


def test_over_the_limit_is_refused_with_413_nothing_stored_nothing_recorded(
        alice, open_case, settings):
    settings.ATTACHMENT_MAX_BYTES = 10_000
    case_id = open_case()
    before = current_state(case_id)
    response = alice.post(f"/cases/{case_id}/attach/",
                          {"attach-files": [upload(png(20_000), "big.png")]})
    assert response.status_code == 413
    # Stopped as it arrived (the upload handler), the file named.
    assert "big.png is over the limit of 10,000 bytes; nothing was kept" in \
        response.content.decode()
    # The store's own limit, for callers that hand it bytes (mail, the API): read no further.
    with pytest.raises(store.FileRefused) as refused:
        store.keep(io.BytesIO(b"x" * 10_001), "big.txt")
    assert refused.value.status == 413
    # With HTMX the answer is 200 (htmx swaps it, as every action's) and says the same.
    partial = alice.post(f"/cases/{case_id}/attach/",
                         {"attach-files": [upload(png(20_000), "big.png")]},
                         HTTP_HX_REQUEST="true")
    assert "over the limit of 10,000 bytes" in partial.content.decode()
    assert blobs() == 0 and not StoredBlob.objects.exists()
    after = current_state(case_id)
    assert after.version == before.version and after.attachments == []
    # Exactly at the limit is kept.
    assert alice.post(f"/cases/{case_id}/attach/", {"attach-files": [
        upload(png(10_000)[:10_000], "ok.png")]}).status_code == 302


@pytest.mark.parametrize("data,name,sniffed", [
    (b"\x7fELF\x02\x01\x01" + bytes(200), "tool.png", "application/x-executable"),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x()</script>'
     b"</svg>", "logo.png", "image/svg+xml"),
    (b"<!DOCTYPE html><html><script>alert(1)</script></html>", "page.txt", "text/html"),
])
def test_a_type_off_the_allow_list_is_refused_with_415(alice, open_case, data, name,
                                                        sniffed):
    case_id = open_case()
    response = alice.post(f"/cases/{case_id}/attach/", {"attach-files": [upload(data, name)]})
    assert response.status_code == 415
    assert f"files of type {sniffed} are not accepted" in response.content.decode()
    assert blobs() == 0 and current_state(case_id).attachments == []


def test_plain_text_and_csv_are_sniffed_as_text(temporal):
    assert store.keep(b"a,b\n1,2\n", "data.csv").content_type == "text/csv"
    assert store.keep("héllo\n".encode(), "notes.log").content_type == "text/plain"
    with pytest.raises(store.FileRefused) as refused:
        store.keep(b"\x00\x01\x02binary", "x.txt")
    assert refused.value.status == 415


def test_downloads_only_through_the_access_rule(alice, open_case, temporal):
    general = open_case(queue="general")
    billing = open_case(queue="billing")
    secret = store.keep(b"invoice 42\n", "invoice.txt")
    run(gateway.act(billing, Attach(actor="sam", files=[secret])))
    doc = b"log line\n" * 1000
    assert alice.post(f"/cases/{general}/attach/",
                      {"attach-files": [upload(doc, "app.log")]}).status_code == 302
    response = alice.get(f"/cases/{general}/attachments/a1/")
    assert response.status_code == 200 and response.streaming
    # Streamed by an async iterator: under ASGI (uvicorn) a file object is read whole first.
    assert response.is_async
    assert b"".join(response) == doc
    assert response["Content-Length"] == str(len(doc))
    assert response["Content-Disposition"] == 'attachment; filename="app.log"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "text/plain"
    # bob works technical only: the general case's file is no file of his.
    bob = logged_in(_persona("bob", "Agent", queues=("technical",)))
    assert bob.get(f"/cases/{general}/attachments/a1/").status_code == 404
    # alice does not work billing: its file is a 404, not a 403 that says it exists.
    assert alice.get(f"/cases/{billing}/attachments/a1/").status_code == 404
    assert alice.get(f"/cases/{general}/attachments/a2/").status_code == 404
    assert alice.get(f"/cases/{general}/attachments/../a1/").status_code == 404
    assert alice.get("/cases/case-ZZZZZZZZ/attachments/a1/").status_code == 404
    sam = logged_in(_persona("sam", "Supervisor"))
    assert sam.get(f"/cases/{billing}/attachments/a1/").status_code == 200
    logged_out = alice.__class__()
    assert logged_out.get(f"/cases/{general}/attachments/a1/").status_code == 302


def test_preview_is_inline_only_for_raster_images_by_their_bytes(alice, open_case):
    case_id = open_case()
    image = png(seed=b"preview")
    alice.post(f"/cases/{case_id}/attach/", {"attach-files": [upload(image, "shot.png")]})
    shown = alice.get(f"/cases/{case_id}/attachments/a1/preview/")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert shown["Content-Disposition"].startswith("inline")
    assert shown["X-Content-Type-Options"] == "nosniff"
    assert b"".join(shown) == image
    # A Temporal client records markup as an image: the bytes decide, never the record.
    for n, markup in enumerate((b'<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>',
                                b"<html><script>alert(1)</script></html>")):
        kept = store.keep(markup, "x.eml", internal_type="message/rfc822")
        disguised = FileRef("cute.png", kept.size, "image/png", kept.sha256, kept.key)
        run(gateway.act(case_id, Attach(actor="sam", files=[disguised])))
        assert alice.get(f"/cases/{case_id}/attachments/a{n + 2}/preview/").status_code == 404
        download = alice.get(f"/cases/{case_id}/attachments/a{n + 2}/")
        assert download["Content-Disposition"].startswith("attachment")
    alice.post(f"/cases/{case_id}/attach/", {"attach-files": [upload(b"hi\n", "a.txt")]})
    assert alice.get(f"/cases/{case_id}/attachments/a4/preview/").status_code == 404


def test_a_5_mb_upload_leaves_no_history_payload_over_16_kb(alice, open_case, temporal):
    case_id = open_case()
    big = png(5 * 1024 * 1024)
    response = alice.post(f"/cases/{case_id}/comment/", {
        "comment-body": "The full dump", "comment-files": [upload(big, "dump.png")]})
    assert response.status_code == 302
    [attachment] = current_state(case_id).attachments
    assert attachment.file.size == len(big)

    async def largest_event() -> int:
        handle = temporal.client.get_workflow_handle(case_id)
        history = await handle.fetch_history()
        return max(event.ByteSize() for event in history.events)

    assert run(largest_event()) < 16 * 1024


def test_a_refused_attach_gives_its_file_back_but_not_what_another_case_holds(
        alice, open_case):
    billing = open_case(queue="billing")
    general = open_case(queue="general")
    # alice may not see billing: refused by the case (as no such case), the file discarded.
    response = alice.post(f"/cases/{billing}/attach/", {
        "attach-files": [upload(b"mine\n", "mine.txt")]})
    assert response.status_code == 404
    assert blobs() == 0 and not StoredBlob.objects.exists()
    # The same bytes already on another case survive a refusal on a closed one.
    assert alice.post(f"/cases/{general}/attach/", {
        "attach-files": [upload(b"shared\n", "shared.txt")]}).status_code == 302
    closed = open_case(queue="general")
    run(gateway.act(closed, Close(actor="sam")))
    refused = alice.post(f"/cases/{closed}/attach/", {
        "attach-files": [upload(b"shared\n", "again.txt")]})
    assert refused.status_code == 409 and "This case is closed." in refused.content.decode()
    assert blobs() == 1 and StoredBlob.objects.get().claims == 1
    assert alice.get(f"/cases/{general}/attachments/a1/").status_code == 200


def test_a_file_reference_from_any_temporal_client_is_checked(temporal, open_case):
    from django.conf import settings

    sha = "ab" * 32
    bad = FileRef("x.png", 10, "image/png", sha, "../../../etc/passwd")
    handle = run(temporal.client.start_workflow(
        "Case", CaseInput(case_id="", actor="cli", new=NewCase(
            title="Odd", queue="general", files=[bad]), policy=QueuePolicy("general")),
        id=new_case_id(), task_queue=settings.TEMPORAL_TASK_QUEUE))
    with pytest.raises(WorkflowFailureError) as failed:
        run(handle.result())
    assert "store's key for its SHA-256" in str(failed.value.cause)
    case_id = open_case()
    with pytest.raises(gateway.ActionRefused, match="store's key"):
        run(gateway.act(case_id, Attach(actor="sam", files=[bad])))
    with pytest.raises(gateway.ActionRefused, match="At most 20 files"):
        good = FileRef("x.png", 10, "image/png", sha, rules.file_key(sha))
        run(gateway.act(case_id, Attach(actor="sam", files=[good] * 21)))


def test_the_intake_api_opens_a_case_with_files_attaches_and_lists_them(
        client, api_token, settings):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    opened = client.post("/api/cases/", {
        "case": json.dumps({"title": "Invoice wrong", "queue": "billing"}),
        "files": [upload(b"total: 42\n", "invoice.txt"), upload(png(), "scan.png")]}, **auth)
    assert opened.status_code == 201, opened.content
    case_id = opened.json()["id"]
    added = client.post(f"/api/cases/{case_id}/attachments/", {
        "files": [upload(b"more\n", "more.txt")]}, **auth)
    assert added.status_code == 201, added.content
    assert [a["id"] for a in added.json()["attachments"]] == ["a3"]
    body = client.get(f"/api/cases/{case_id}/", **auth).json()
    listed = [{k: a[k] for k in ("id", "name", "size", "type", "url")}
              for a in body["attachments"]]
    assert listed == [
        {"id": "a1", "name": "invoice.txt", "size": 10, "type": "text/plain",
         "url": f"/api/cases/{case_id}/attachments/a1/"},
        {"id": "a2", "name": "scan.png", "size": len(png()), "type": "image/png",
         "url": f"/api/cases/{case_id}/attachments/a2/"},
        {"id": "a3", "name": "more.txt", "size": 5, "type": "text/plain",
         "url": f"/api/cases/{case_id}/attachments/a3/"}]
    assert all(len(a["sha256"]) == 64 and "key" not in a for a in body["attachments"])
    got = client.get(body["attachments"][0]["url"], **auth)
    assert got.status_code == 200 and b"".join(got) == b"total: 42\n"
    assert got["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/api/cases/{case_id}/attachments/a9/", **auth).status_code == 404
    settings.ATTACHMENT_MAX_BYTES = 100
    over = client.post(f"/api/cases/{case_id}/attachments/", {
        "files": [upload(b"x" * 101, "big.txt")]}, **auth)
    assert over.status_code == 413 and len(current_state(case_id).attachments) == 3
    # Technical is not this token's queue: refused as no such case, its file given back.
    other = run(_open_technical())
    before = blobs()
    settings.ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024
    assert client.post(f"/api/cases/{other}/attachments/", {
        "files": [upload(b"nope\n", "nope.txt")]}, **auth).status_code == 404
    assert blobs() == before


async def _open_technical() -> str:
    case_id = new_case_id()
    await gateway.start_case(case_id, NewCase(title="Elsewhere", queue="technical"), "intake",
                             QueuePolicy("technical"))
    return case_id


def test_the_history_tab_and_time_travel_show_files(alice, open_case):
    case_id = open_case(queue="general")
    alice.post(f"/cases/{case_id}/attach/", {"attach-files": [upload(b"a\n", "first.txt")]})
    alice.post(f"/cases/{case_id}/attach/", {"attach-files": [upload(b"b\n", "second.txt")]})
    entries = timeline(case_id)
    [first, second] = [e for e in entries if e.kind == "attached"]
    assert (first.text, second.text) == ("alice attached first.txt", "alice attached second.txt")
    page = alice.get(f"/cases/{case_id}/history/").content.decode()
    assert "alice attached first.txt" in page and "alice attached second.txt" in page
    as_of = alice.get(f"/cases/{case_id}/history/?at={first.run_id}.{first.event_id}")
    shown = as_of.content.decode()
    assert 'id="attachment-a1"' in shown and 'id="attachment-a2"' not in shown
    now = alice.get(f"/cases/{case_id}/history/?at={second.run_id}.{second.event_id}")
    assert 'id="attachment-a2"' in now.content.decode()


def test_the_requester_gets_a_public_comments_files_never_an_internal_notes(
        smtp, people, settings):  # noqa: F811
    settings.ATTACHMENT_MAIL_MAX_BYTES = 1000
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(
        title="Scanner", queue="technical", requester_name="Grace",
        requester_email="grace@example.net"), "intake", QueuePolicy("technical")))
    small = store.keep(b"steps to fix\n", "steps.txt")
    large = store.keep(b"y" * 2000, "trace.txt")
    secret = store.keep(b"internal only\n", "secret.txt")
    run(gateway.act(case_id, AddComment(actor="alice", authority=ALICE, body="Try these",
                                        files=[small, large])))
    mail = smtp.one_to("grace@example.net", about=case_id)
    # Text travels as MIME text: its line ends are the mail's (CRLF), as with any mail.
    files = {p.get_filename(): p.get_content().replace("\r\n", "\n")
             for p in mail.iter_attachments()}
    assert files == {"steps.txt": "steps to fix\n"}
    assert "Too large to send by email, kept on your request: trace.txt." in _text(mail)
    run(gateway.act(case_id, AddComment(actor="alice", authority=ALICE, body="Note @sam",
                                        internal=True, files=[secret])))
    to_sam = smtp.one_to("sam@example.com", about=case_id)
    assert not list(to_sam.iter_attachments())  # agents open the case instead
    assert len(smtp.to("grace@example.net", about=case_id)) == 1
    eventually(lambda: [e for e in timeline(case_id) if e.kind == "notified"])


@pytest.mark.parametrize("env,says", [
    ({"ATTACHMENT_MAX_BYTES": "25MB"}, "ATTACHMENT_MAX_BYTES must be a whole number"),
    ({"ATTACHMENT_MAX_BYTES": "0"}, "ATTACHMENT_MAX_BYTES must be at least 1 byte"),
    ({"ATTACHMENT_TYPES": "image/png,image/svg+xml"}, "cannot allow image/svg+xml"),
    ({"ATTACHMENT_STORAGE": "ftp"}, "ATTACHMENT_STORAGE is filesystem or s3"),
    ({"ATTACHMENT_STORAGE": "s3"}, "needs AWS_STORAGE_BUCKET_NAME"),
])
def test_bad_file_settings_refuse_to_start(tmp_path, env, says):
    from .conftest import manage

    result = manage(["check"], {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
                                "TRACERAIL_VAR_DIR": str(tmp_path), "DEBUG": "true", **env})
    assert result.returncode != 0 and says in result.stderr



KEEPS_AT_ONCE = """
import threading
from cases.files import store
failures = []
def keep(n):
    try:
        for i in range(4):
            store.keep(f"thread {n} file {i}".encode(), f"f{n}-{i}.txt")
    except Exception as err:
        failures.append(repr(err))
threads = [threading.Thread(target=keep, args=(n,)) for n in range(12)]
[t.start() for t in threads]
[t.join() for t in threads]
from cases.models import StoredBlob
print("failures", len(failures), failures[:1])
print("blobs", StoredBlob.objects.count())
"""


def test_keeps_at_once_on_a_sqlite_file_wait_their_turn_instead_of_failing(tmp_path):
    """The SMTP door hands over up to eight mails at once, each keeping its files. On the
    default SQLite database two keeps deadlocked upgrading their read to a write ("database
    is locked" at once, not after the busy timeout): the door answered 451 to most of a burst
    (bench/mail.py). Transactions there now take the write lock when they begin."""
    from .conftest import manage

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "SECRET_KEY": "tests-only-" + "k" * 50,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "",
           "ATTACHMENT_ROOT": str(tmp_path / "files")}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stderr
    done = manage(["shell", "-c", KEEPS_AT_ONCE], env)
    assert done.returncode == 0, done.stderr
    assert "failures 0 []" in done.stdout, done.stdout
    assert "blobs 48" in done.stdout, done.stdout
