"""Every activity that reads Django goes through the one door (`dbconn.outside_request`),
which drops a connection PostgreSQL closed under the worker (issue 22, defect 4: the routing
activity kept a dead one, and so did the queue-policy ask added beside it). Checked on the
source, so a new activity cannot forget it."""

import ast
from pathlib import Path

from .conftest import parse

ACTIVITIES = Path(__file__).resolve().parent.parent / "workers" / "activities.py"


def test_every_activity_that_reaches_django_goes_through_outside_request():
    tree = parse(ACTIVITIES.read_text())
    forgot, checked = [], 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not any(isinstance(d, ast.Attribute) and d.attr == "defn" for d in node.decorator_list):
            continue
        imported = [n.module for n in ast.walk(node)
                    if isinstance(n, ast.ImportFrom) and n.module]
        if not any(m.startswith(("cases.", "django")) for m in imported):
            continue
        checked += 1
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if "outside_request" not in used:
            forgot.append(node.name)
    assert forgot == []
    assert checked >= 4  # deliver_notices, check_escalation, queue_policy, route_case
