"""A private Dovecot IMAP server for tests (Debian's dovecot-imapd, `.ci/run` installs it): a
generated config in a temporary directory, one passwd-file user with a maildir there, plain
IMAP on a free loopback port, run in the foreground and stopped after the test."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import free_port

DOVECOT = "/usr/sbin/dovecot"


@dataclass
class Dovecot:
    host: str
    port: int
    username: str
    password: str
    directory: str

    def client(self) -> Any:
        from imapclient import IMAPClient

        imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        imap.login(self.username, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as imap:
            imap.append(folder, raw)

    def unseen(self, folder: str = "INBOX") -> list[int]:
        with self.client() as imap:
            imap.select_folder(folder, readonly=True)
            return sorted(imap.search(["UNSEEN"]))

    def flags(self, folder: str = "INBOX") -> dict[int, set[bytes]]:
        with self.client() as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search(["ALL"])
            return {uid: set(f[b"FLAGS"]) for uid, f in imap.fetch(uids, ["FLAGS"]).items()}


def _config(root: str, port: int, uid: int, gid: int, internal: str, login: str) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {min(uid, 500)}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    assert os.path.exists(DOVECOT), "dovecot-imapd is not installed (.ci/run installs it)"
    # Under /tmp with 0755, not pytest's 0700 tmp_path: Dovecot's mail processes run as the
    # mail user, which must reach the maildir.
    root = tempfile.mkdtemp(prefix="tracerail-dovecot-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        # Root may not be the mail user; Debian's package creates dovecot and dovenull.
        uid = gid = 65534
        internal, login = "dovecot", "dovenull"
    else:
        uid, gid = os.getuid(), os.getgid()
        internal = login = getpass.getuser()
    for sub in ("mail", "home"):
        os.makedirs(f"{root}/{sub}")
        if os.geteuid() == 0:
            os.chown(f"{root}/{sub}", uid, gid)
    username, password = "support", "imap-pass-" + os.urandom(6).hex()
    with open(f"{root}/users", "w") as users:
        users.write(f"{username}:{{PLAIN}}{password}:{uid}:{gid}::{root}/home::\n")
    port = free_port()
    with open(f"{root}/dovecot.conf", "w") as conf:
        conf.write(_config(root, port, uid, gid, internal, login))
    process = subprocess.Popen([DOVECOT, "-F", "-c", f"{root}/dovecot.conf"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = open(f"{root}/dovecot.log").read() if os.path.exists(
                        f"{root}/dovecot.log") else ""
                    out = process.stdout.read().decode() if process.poll() is not None else ""
                    raise RuntimeError(f"dovecot did not start: {out}{log}") from None
                time.sleep(0.1)
        yield Dovecot("127.0.0.1", port, username, password, root)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
