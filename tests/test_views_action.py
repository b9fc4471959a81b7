from __future__ import annotations

from cases import temporal as gateway
from workers.model import Claim

from .conftest import run


def test_htmx_claim_returns_the_detail_partial_from_the_update(agent_client, open_case):
    case_id = open_case()
    response = agent_client.post(f"/cases/{case_id}/claim/", {"claim-version": "1",
                                                              "claim-key": "k1"},
                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    content = response.content.decode()
    assert content.lstrip().startswith('<article id="case"')
    assert "<html" not in content
    assert '<dd class="assignee">alice</dd>' in content
    assert 'data-version="2"' in content
    assert "Claim: done." in content


def test_plain_post_redirects_to_the_case(agent_client, open_case):
    case_id = open_case()
    response = agent_client.post(f"/cases/{case_id}/comment/",
                                 {"comment-version": "1", "comment-body": "Hello there"})
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case_id}/"
    page = agent_client.get(response["Location"]).content.decode()
    assert "Hello there" in page and "Comment: done." in page


def test_internal_comment_is_marked(agent_client, open_case):
    case_id = open_case()
    response = agent_client.post(
        f"/cases/{case_id}/comment/",
        {"comment-version": "1", "comment-body": "Between us", "comment-internal": "on"},
        HTTP_HX_REQUEST="true",
    )
    assert 'class="comment internal"' in response.content.decode()
    assert run(gateway.get_case(case_id)).comments[0].internal is True


def test_empty_comment_is_an_inline_form_error(agent_client, open_case):
    case_id = open_case()
    response = agent_client.post(f"/cases/{case_id}/comment/",
                                 {"comment-version": "1", "comment-body": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert run(gateway.get_case(case_id)).version == 1


def test_validator_refusal_is_shown_inline(agent_client, open_case):
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="bob")))
    response = agent_client.post(f"/cases/{case_id}/claim/", {"claim-key": "x"})
    assert response.status_code == 409
    assert "Already claimed by bob." in response.content.decode()
    htmx = agent_client.post(f"/cases/{case_id}/claim/", {"claim-key": "y"},
                             HTTP_HX_REQUEST="true")
    assert htmx.status_code == 200
    assert "Already claimed by bob." in htmx.content.decode()


def test_stale_form_shows_fresh_state_and_keeps_the_text(agent_client, open_case):
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="bob")))
    response = agent_client.post(
        f"/cases/{case_id}/comment/",
        {"comment-version": "1", "comment-body": "My careful reply"},
        HTTP_HX_REQUEST="true",
    )
    content = response.content.decode()
    assert "Changed by bob since you opened it" in content
    assert "My careful reply" in content  # the user's text survives
    assert 'data-version="2"' in content
    assert 'name="comment-version" value="2"' in content
    assert run(gateway.get_case(case_id)).comments == []


def test_double_post_with_same_key_comments_once(agent_client, open_case):
    case_id = open_case()
    data = {"comment-body": "Only once", "comment-key": "same-key"}
    agent_client.post(f"/cases/{case_id}/comment/", data, HTTP_HX_REQUEST="true")
    agent_client.post(f"/cases/{case_id}/comment/", data, HTTP_HX_REQUEST="true")
    assert [c.body for c in run(gateway.get_case(case_id)).comments] == ["Only once"]


def test_unknown_action_and_case_are_404(agent_client, open_case):
    case_id = open_case()
    assert agent_client.post(f"/cases/{case_id}/explode/").status_code == 404
    assert agent_client.post("/cases/case-00000000/claim/").status_code == 404
    assert agent_client.get(f"/cases/{case_id}/claim/").status_code == 405


def test_an_action_reads_its_configuration_once(agent_client, supervisor_client, open_case,
                                                monkeypatch):
    """Read from the database at most once per request, and not at all once it is cached
    under the user's access version (cases/config/reading.py)."""
    from cases.config import reading as config

    reads: list[int] = []
    real = config._base

    def counting(*args, **kwargs):
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(config, "_base", counting)
    case_id = open_case(queue="technical")
    for client in (agent_client, supervisor_client):
        reads.clear()
        response = client.post(f"/cases/{case_id}/comment/", {"comment-body": "once"},
                               HTTP_HX_REQUEST="true")
        assert "Comment: done." in response.content.decode()
        assert len(reads) <= 1
        reads.clear()
        client.get(f"/cases/{case_id}/")
        assert reads == []  # cached by the request before


def test_the_holder_changes_the_requester_from_the_case_page(agent_client, open_case):
    case_id = open_case(requester_name="Ada", requester_email="ada@example.com")
    # Not offered to an agent who does not hold the case...
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert f'action="/cases/{case_id}/change_requester/"' not in page
    run(gateway.act(case_id, Claim(actor="alice")))
    # ...offered once she does, starting from the current requester.
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    form = page.split(f'action="/cases/{case_id}/change_requester/"')[1].split("</form>")[0]
    assert 'name="change_requester-name"' in form and 'value="Ada"' in form
    assert 'value="ada@example.com"' in form
    bad = agent_client.post(f"/cases/{case_id}/change_requester/", {
        "change_requester-version": "2", "change_requester-name": "Grace",
        "change_requester-email": "not an email"}, HTTP_HX_REQUEST="true")
    assert "Enter a valid email address." in bad.content.decode()
    assert run(gateway.get_case(case_id)).version == 2
    response = agent_client.post(f"/cases/{case_id}/change_requester/", {
        "change_requester-version": "2", "change_requester-name": "Grace Hopper",
        "change_requester-email": "grace@example.com"}, HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200 and "Change requester: done." in content
    assert "Requester: Grace Hopper &lt;grace@example.com&gt;" in content
    state = run(gateway.get_case(case_id))
    assert (state.requester.name, state.requester.email) == ("Grace Hopper",
                                                              "grace@example.com")
    history = agent_client.get(f"/cases/{case_id}/history/").content.decode()
    assert "alice changed the requester to Grace Hopper &lt;grace@example.com&gt;" in history


def test_a_refused_requester_change_keeps_what_was_typed(agent_client, open_case):
    case_id = open_case(requester_name="Ada", requester_email="ada@example.com")
    run(gateway.act(case_id, Claim(actor="alice")))
    response = agent_client.post(f"/cases/{case_id}/change_requester/", {
        "change_requester-version": "2", "change_requester-name": "Ada",
        "change_requester-email": "ada@example.com"}, HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert "Ada &lt;ada@example.com&gt; is already the requester." in content
    form = content.split(f'action="/cases/{case_id}/change_requester/"')[1].split("</form>")[0]
    assert "is already the requester" in form  # shown on the form's own field
    assert run(gateway.get_case(case_id)).version == 2
