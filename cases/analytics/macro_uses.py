"""How often each macro was applied (issue 25), from the case export: the `events` view's
timeline entries of kind "macro", whose detail is the macro's name. No counter of case data
is kept in Django; a case not exported yet is not counted yet."""

from __future__ import annotations

import logging

from cases.analytics import store

log = logging.getLogger(__name__)


def macro_uses(db: object | None = None) -> dict[str, int] | None:
    """Uses by macro name; None when the export cannot be read (said, not guessed)."""
    try:
        cursor = db if db is not None else store.shared().snapshot().db.cursor()
        rows = cursor.execute(  # type: ignore[attr-defined]
            "SELECT detail, count(*) FROM events WHERE kind = ? GROUP BY detail",
            ["macro"]).fetchall()
    except Exception:  # the export's store is unreachable: the admin page still opens
        log.warning("macro uses: the case export could not be read", exc_info=True)
        return None
    return {name: count for name, count in rows}
