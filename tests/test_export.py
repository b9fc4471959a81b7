from __future__ import annotations

import csv
import io

from cases import temporal as gateway
from workers.model import Claim

from .conftest import eventually, run


def _csv(client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    # The view streams from an async iterator (as under uvicorn); drain it the same way.
    async def drain() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    body = run(drain()).decode()
    return list(csv.reader(io.StringIO(body)))


def test_export_streams_every_matching_case_across_pages(supervisor_client, open_case,
                                                         monkeypatch):
    from cases.web import export

    monkeypatch.setattr(export, "EXPORT_PAGE_SIZE", 2)  # force several Visibility pages
    ids = {open_case(title=f"Export axolotl {i}") for i in range(5)}
    run(gateway.act(sorted(ids)[0], Claim(actor="sam")))

    def exported() -> list[list[str]]:
        rows = _csv(supervisor_client, "/cases/export.csv?q=axolotl")
        assert {r[0] for r in rows[1:]} == ids
        claimed = next(r for r in rows if r[0] == sorted(ids)[0])
        assert claimed[2] == "In progress" and claimed[5] == "sam"
        return rows

    rows = eventually(exported)
    assert rows[0][:6] == ["Case", "Title", "Status", "Priority", "Queue", "Assignee"]


def test_export_follows_filters_and_access(agent_client, open_case):
    visible = open_case(title="Export quoll", queue="technical")
    hidden = open_case(title="Export quoll", queue="billing")

    def exported() -> None:
        ids = {r[0] for r in _csv(agent_client, "/cases/export.csv?q=quoll")[1:]}
        assert ids == {visible}
        assert hidden not in ids

    eventually(exported)


def test_export_neutralises_formulas(supervisor_client, open_case):
    case_id = open_case(title="=HYPERLINK(\"http://evil\") wallaby", requester_name="@admin")

    def exported() -> None:
        rows = [r for r in _csv(supervisor_client, "/cases/export.csv?q=wallaby")
                if r[0] == case_id]
        assert len(rows) == 1
        assert rows[0][1].startswith("'=") and rows[0][9] == "'@admin"

    eventually(exported)


def test_export_bad_filter_is_400(supervisor_client, temporal):
    response = supervisor_client.get("/cases/export.csv?assignee=a+b")
    assert response.status_code == 400
    assert b"That is not a username." in response.content
