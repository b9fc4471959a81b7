"""Reading one received mail (issue 23), defensively: whatever a sender wrote becomes a
`Mail` (with notes on what could not be read), never an exception. Bounded everywhere: the
headers read, the parts walked, the text kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

from mailparser_reply import EmailReplyParser

from workers import rules

logger = logging.getLogger("tracerail.mailin")

# A header field longer than this is dropped before parsing (the parser of `policy.default`
# is slow on a megabyte of folded header); so are fields past the count.
MAX_HEADER_FIELD = 16 * 1024
MAX_HEADER_FIELDS = 500
# Parts walked, and how deep: a 10,000-part message is read as its first MAX_PARTS.
MAX_PARTS = 200
MAX_DEPTH = 20
# One command takes at most rules.MAX_FILES_PER_COMMAND files: these and the .eml.
MAX_FILES = rules.MAX_FILES_PER_COMMAND - 1
# Text read from a part and handed to the reply parser (its regexes) before cutting.
MAX_TEXT_READ = 1_000_000
MAX_REPLY_READ = 50_000
MAX_REFERENCES = 50
_ID_RE = re.compile(r"<[^<>\s]{1,300}>")
_PREFIX_RE = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|tr)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAG_RE = re.compile(r"\[\s*case-[0-9A-Za-z]{8}(?:\.[a-z2-7]{16})?\s*\]", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NO_SUBJECT = "(no subject)"


@dataclass
class Mail:
    raw: bytes
    key: str  # the Message-ID, or a hash of the bytes for a mail without one
    message_id: str  # as the sender gave it ("" none)
    sender_name: str
    sender_email: str  # "" when From names no usable address
    subject: str
    title: str
    text: str  # the whole text, bounded
    reply: str  # the text without quoted history and signature
    references: list[str]  # In-Reply-To, then References
    addressed_to: list[str]  # To, Cc, Delivered-To addresses
    headers: dict[str, str]  # the few header fields the classification reads, lower-case
    content_type: str
    files: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be read or kept


def _bounded_headers(raw: bytes) -> tuple[bytes, list[str]]:
    """The message with over-long or surplus header fields dropped, and notes saying so."""
    end = len(raw)
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at != -1:
            end = min(end, at)
    head, body = raw[:end], raw[end:]
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    notes = []
    kept = []
    for lines in fields:
        size = sum(map(len, lines))
        if size > MAX_HEADER_FIELD:
            name = lines[0].split(b":", 1)[0][:60].decode("ascii", "replace")
            notes.append(f"a header field of {size:,} bytes ({name}) was not read")
        elif len(kept) >= MAX_HEADER_FIELDS:
            notes.append(f"header fields past the first {MAX_HEADER_FIELDS} were not read")
            break
        else:
            kept.append(b"".join(lines))
    if not notes:
        return raw, []
    return b"".join(kept) + body, notes


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception as err:  # a header the parser cannot make sense of reads as none
        logger.info("mail header %s unreadable: %s", name, err)
        return ""
    return " ".join(_CONTROL_RE.sub(" ", text).split())


def _addresses(msg: Message, *names: str) -> list[str]:
    found = []
    for name in names:
        try:
            values = [str(v) for v in msg.get_all(name) or []]
            found += [a for _, a in getaddresses(values) if "@" in a]
        except Exception as err:
            logger.info("mail header %s unreadable: %s", name, err)
    return found[:50]


def title_of(subject: str) -> str:
    """The case's title: the subject without reply prefixes or our case tag."""
    title = _TAG_RE.sub(" ", subject)
    title = _PREFIX_RE.sub("", title)
    title = " ".join(title.split())[:rules.MAX_TITLE].strip()
    return title or NO_SUBJECT


class _Text(HTMLParser):
    """HTML as plain text: the words, a line per block, no script or style."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "blockquote", "pre", "table", "ul", "ol", "hr"})
    HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(data)


def html_to_text(html: str) -> str:
    reader = _Text()
    try:
        reader.feed(html[:MAX_TEXT_READ])
        reader.close()
    except Exception as err:  # what was read so far is the text
        logger.info("mail HTML unreadable past a point: %s", err)
    lines = (" ".join(line.split()) for line in "".join(reader.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _text_of(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
        if isinstance(content, str):
            return content[:MAX_TEXT_READ]
    except Exception as err:  # an unknown charset, a broken transfer encoding
        logger.info("mail part read as UTF-8 (%s)", err)
    data = _bytes_of(part)
    return data[:MAX_TEXT_READ].decode("utf-8", errors="replace")


def _bytes_of(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "replace") if isinstance(payload, str) else b""


def _leaves(msg: Message, notes: list[str]) -> list[Message]:
    """The message's non-multipart parts, in order, the walk bounded in count and depth
    (iterative: a deeply nested message would exhaust the recursion of Message.walk)."""
    found: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            notes.append(f"parts past the first {MAX_PARTS} were not read")
            break
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            if depth >= MAX_DEPTH:
                notes.append(f"parts nested deeper than {MAX_DEPTH} were not read")
                continue
            stack.extend((p, depth + 1) for p in reversed(payload[:MAX_PARTS])
                         if isinstance(p, Message))
        else:
            found.append(part)
    return found


def reply_text(text: str) -> str:
    """The newest reply of a mail's text: quoted history and signature stripped."""
    cut = text[:MAX_REPLY_READ]
    try:
        replies = EmailReplyParser(languages=["en", "de", "fr", "es", "nl"]).read(cut).replies
        body = replies[0].body if replies else ""
    except Exception as err:
        logger.info("reply parser failed, the whole text kept: %s", err)
        body = ""
    return (body or cut).strip()


def read(raw: bytes) -> Mail:
    """`raw` as a Mail. Never raises for what the sender wrote."""
    bounded, notes = _bounded_headers(raw)
    for note in notes:
        logger.warning("malformed mail: %s", note)
    try:
        msg = BytesParser(policy=policy.default).parsebytes(bounded)
    except Exception as err:  # nesting past the recursion limit: its headers still tell
        logger.warning("malformed mail: body not parsed (%s)", type(err).__name__)
        notes.append("the message's body could not be parsed")
        try:
            msg = BytesParser(policy=policy.default).parsebytes(bounded, headersonly=True)
        except Exception:
            msg = EmailMessage()
    for defect in list(getattr(msg, "defects", []))[:3]:
        notes.append(f"malformed: {type(defect).__name__}")
    message_id = next(iter(_ID_RE.findall(_header(msg, "Message-ID"))), "")
    key = message_id or "<sha256." + hashlib.sha256(raw).hexdigest() + "@no-message-id>"
    name, email = parseaddr(_header(msg, "From"))
    if not rules.EMAIL_RE.match(email) or len(email) > rules.MAX_NAME:
        email = ""
    subject = _header(msg, "Subject")
    references = _ID_RE.findall(_header(msg, "In-Reply-To") + " " +
                                _header(msg, "References"))
    headers = {n.lower(): _header(msg, n).lower() for n in (
        "Auto-Submitted", "Precedence", "X-Autoreply", "X-Autorespond", "Return-Path")}
    try:
        content_type = msg.get_content_type()
    except Exception:
        content_type = "text/plain"
    plain, html = "", ""
    files: list[tuple[str, bytes]] = []
    for part in _leaves(msg, notes):
        try:
            kind = part.get_content_type()
            disposition = part.get_content_disposition()
            filename = part.get_filename()
        except Exception as err:
            notes.append(f"a part could not be read ({type(err).__name__})")
            continue
        if disposition != "attachment" and not filename and kind == "text/plain" and not plain:
            plain = _text_of(part)
        elif disposition != "attachment" and not filename and kind == "text/html" and not html:
            html = _text_of(part)
        elif kind.startswith("multipart/") or (kind.startswith("text/") and not filename):
            continue  # another alternative of the text, or a report's own parts
        elif len(files) < MAX_FILES:
            data = _bytes_of(part)
            if data:
                files.append((_safe_name(filename, kind), data))
        else:
            notes.append(f"attachments past the first {MAX_FILES} were not kept")
    text = plain if plain.strip() else html_to_text(html)
    text = _CONTROL_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    return Mail(raw=raw, key=key[:rules.MAX_MESSAGE_ID], message_id=message_id,
                sender_name=" ".join(name.split())[:rules.MAX_NAME], sender_email=email,
                subject=subject[:1000], title=title_of(subject), text=text,
                reply=reply_text(text), references=references[:MAX_REFERENCES],
                addressed_to=_addresses(msg, "To", "Cc", "Delivered-To"),
                headers=headers, content_type=content_type, files=files,
                notes=list(dict.fromkeys(notes)))


def _safe_name(filename: str | None, kind: str) -> str:
    """The part's own name (the store cleans it: rules.clean_file_name), or one from its
    type for a part that gives none."""
    if filename and filename.strip():
        return filename
    sub = re.sub(r"[^a-z0-9]+", "", kind.partition("/")[2])[:10]
    return f"attachment.{sub or 'bin'}"
