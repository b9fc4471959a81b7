"""Availability (issue 17): people say whether they are available for cases or away, and the
dashboard shows supervisors, per queue, cases at risk and breached and who is available."""

from __future__ import annotations

import re

from cases import temporal as gateway
from workers.model import Assign

from .conftest import _persona, eventually, logged_in, run


def test_a_person_marks_themselves_away_and_back(db):
    from cases.config import presence

    bob = _persona("bob", "Agent", queues=("technical",))
    client = logged_in(bob)
    page = client.get("/availability/").content.decode()
    assert 'value="yes"' in page and "checked" in page.split('value="yes"')[1][:40]
    assert client.post("/availability/", {"available": "no"}).status_code == 302
    assert not presence.is_available(bob)
    assert client.post("/availability/", {"available": "maybe"}).status_code == 200
    client.post("/availability/", {"available": "yes"})
    assert presence.is_available(bob)


def test_the_dashboard_shows_per_queue_at_risk_breached_and_who_is_available(
        temporal, settings, transactional_db, open_case):
    settings.CASE_SLA_SECONDS = [1, 60, 3600, 3600]
    settings.CASE_SLA_AT_RISK = [1, 0.02, 0.75, 0.75]  # priority 2: at risk after 1.2 s
    sam = _persona("sam", "Supervisor")
    agents = {name: _persona(name, "Agent", queues=("billing",)) for name in ("ann", "ben", "cat")}
    logged_in(agents["ben"]).post("/availability/", {"available": "no"})
    breached = open_case(title="Perq breached", queue="billing", priority=1)
    risky = open_case(title="Perq risky", queue="billing", priority=2)
    run(gateway.act(risky, Assign(actor="sam", assignee="ann")))
    client = logged_in(sam)

    def shown() -> str:
        page = client.get("/dashboard/?q=perq").content.decode()
        row = re.search(r'<th scope="row">Billing</th>(.*?)</tr>', page, re.S).group(1)
        assert re.search(r'class="queue-at-risk">1<', row), row
        assert re.search(r'class="queue-breached">1<', row), row
        assert "ann, cat" in row and re.search(r'class="queue-away">ben<', row), row
        return row

    row = eventually(shown, timeout=30, interval=0.3)
    href = re.search(r'href="([^"]+)" class="queue-at-risk"', row).group(1).replace("&amp;", "&")
    assert "at_risk=yes" in href and "queue=billing" in href
    listed = client.get(href).content.decode()
    assert risky in listed and breached not in listed
