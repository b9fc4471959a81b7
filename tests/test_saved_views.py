from __future__ import annotations

import re

from django.contrib.auth.models import Group
from django.test import Client

from cases.models import GroupDefaultView, SavedView

from .conftest import _persona, eventually


def _save(client: Client, name: str, query: str, scope: str = "personal", group: int | None = None):
    data = {"name": name, "scope": scope, "query": query}
    if group:
        data["group"] = str(group)
    return client.post("/views/", data)


def test_save_open_and_count(agent_client, open_case):
    open_case(title="Saved pangolin one")
    open_case(title="Saved pangolin two")
    response = _save(agent_client, "Pangolins", "q=pangolin&page=abc&bogus=1")
    view = SavedView.objects.get(name="Pangolins")
    assert view.query == "q=pangolin"  # only filter parameters are kept
    assert response["Location"] == f"/views/{view.pk}/"
    opened = agent_client.get(response["Location"])
    assert opened["Location"] == f"/cases/?q=pangolin&view={view.pk}"

    def counted() -> None:
        content = agent_client.get(opened["Location"]).content.decode()
        match = re.search(rf'href="/views/{view.pk}/">Pangolins</a>.*?<span class="count">(\d+)<',
                          content, re.S)
        assert match and match.group(1) == "2"
        assert 'class="active"' in content

    eventually(counted)


def test_personal_views_are_private_group_views_shared(agent, other_agent, agent_client,
                                                      temporal):
    team = Group.objects.create(name="Night shift")
    team.user_set.add(agent, other_agent)
    _save(agent_client, "Mine only", "status=new")
    _save(agent_client, "For the shift", "status=waiting", scope="group", group=team.pk)
    bob = Client()
    bob.force_login(other_agent)
    content = bob.get("/cases/?q=").content.decode()
    assert "For the shift" in content and "Mine only" not in content
    mine = SavedView.objects.get(name="Mine only")
    assert bob.get(f"/views/{mine.pk}/").status_code == 404


def test_only_admins_share_globally(agent_client, admin_user, temporal):
    response = _save(agent_client, "Everyone", "status=new", scope="global")
    assert not SavedView.objects.filter(name="Everyone").exists()
    assert "Only admins can share a view with everyone." in agent_client.get(
        response["Location"]).content.decode()
    admin = Client()
    admin.force_login(admin_user)
    _save(admin, "Everyone", "status=new", scope="global")
    assert SavedView.objects.get(name="Everyone").scope == "global"
    assert "Everyone" in agent_client.get("/cases/?q=").content.decode()


def test_owner_renames_and_deletes_others_cannot(agent, other_agent, agent_client, temporal):
    _save(agent_client, "Old name", "status=new")
    view = SavedView.objects.get(name="Old name")
    bob = Client()
    bob.force_login(other_agent)
    assert bob.post(f"/views/{view.pk}/rename/", {"name": "Hijacked"}).status_code == 404
    assert bob.post(f"/views/{view.pk}/delete/").status_code == 404
    agent_client.post(f"/views/{view.pk}/rename/", {"name": "New name"})
    view.refresh_from_db()
    assert view.name == "New name"
    agent_client.post(f"/views/{view.pk}/delete/")
    assert not SavedView.objects.filter(pk=view.pk).exists()


def test_supervisor_sets_a_group_default_view(supervisor_client, agent, temporal):
    agents = Group.objects.get(name="Agent")
    _save(supervisor_client, "Agent triage", "status=new&assignee=none", scope="group",
          group=agents.pk)
    view = SavedView.objects.get(name="Agent triage")
    supervisor_client.post(f"/views/{view.pk}/default/", {"group": agents.pk})
    assert GroupDefaultView.objects.get(group=agents).view == view
    alice = Client()
    alice.force_login(agent)
    landing = alice.get("/cases/")
    assert landing["Location"] == f"/views/{view.pk}/"
    # Any filter in the URL (even an empty one) shows the list as asked.
    assert alice.get("/cases/?q=").status_code == 200


def test_personal_view_cannot_be_a_group_default(supervisor_client, temporal):
    _save(supervisor_client, "Just mine", "status=new")
    view = SavedView.objects.get(name="Just mine")
    agents = Group.objects.get(name="Agent")
    response = supervisor_client.post(f"/views/{view.pk}/default/", {"group": agents.pk},
                                      follow=True)
    assert "Share the view with Agent" in response.content.decode()
    assert not GroupDefaultView.objects.filter(group=agents).exists()


def test_agent_cannot_set_defaults(agent_client, agent, temporal):
    _persona("zed", "Supervisor")
    _save(agent_client, "Mine", "status=new")
    view = SavedView.objects.get(name="Mine")
    assert agent_client.post(f"/views/{view.pk}/default/",
                             {"group": Group.objects.get(name="Agent").pk}).status_code == 404
