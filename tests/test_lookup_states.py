"""cases.web.lookup.SharedStates keeps a bounded number of case states, dropping the least
recently used (a cachetools LRUCache), and never lets an older version replace a newer one."""

from __future__ import annotations

from datetime import UTC, datetime

from cases.web import lookup
from workers.model import CaseState, Requester

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _state(case_id: str, version: int = 1) -> CaseState:
    return CaseState(case_id=case_id, title="t", description="", requester=Requester("a", "a@x"),
                     queue="general", priority=3, status="new", created_at=NOW,
                     created_by="a", updated_at=NOW, updated_by="a", version=version)


def _healthy_feed(monkeypatch):
    monkeypatch.setattr(lookup.SharedStates, "_feed", staticmethod(lambda: (object(), (1, 0))))


def test_states_past_the_size_drop_the_least_recently_used(monkeypatch):
    _healthy_feed(monkeypatch)
    states = lookup.SharedStates(size=2)
    states.remember(_state("case-A"))
    states.remember(_state("case-B"))
    assert states.states.get("case-A")  # A is now the more recently used
    states.remember(_state("case-C"))
    assert set(states.states) == {"case-A", "case-C"}


def test_an_older_version_does_not_replace_a_newer_one(monkeypatch):
    _healthy_feed(monkeypatch)
    states = lookup.SharedStates()
    states.remember(_state("case-A", version=5))
    states.remember(_state("case-A", version=3))
    assert states.states["case-A"][1].version == 5


def test_nothing_is_kept_without_a_healthy_feed(monkeypatch):
    monkeypatch.setattr(lookup.SharedStates, "_feed", staticmethod(lambda: (None, (0, 0))))
    states = lookup.SharedStates()
    states.remember(_state("case-A"))
    assert len(states.states) == 0
