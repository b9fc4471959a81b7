"""Append-only Parquet segments, read deduplicated with DuckDB.

Layout under ANALYTICS_URI (a local folder, var/analytics by default, or any URI pyarrow's
file systems take, such as s3://bucket/prefix; docs/analytics.md):

  cases/<stamp>-<uuid>.parquet    CaseFacts rows (schema.CASES)
  events/<stamp>-<uuid>.parquet   EventFact rows (schema.EVENTS)
  state.json                      the exporter's watermark and when it last finished

A writer never changes a file: it adds one segment per table, events first, so a reader that
sees a case row also sees its timeline. Readers keep per case the row of its newest export
(greatest version, then history_events) and that export's events; the same export written
twice is the same facts, so a retried or doubled export is one row. `compact` folds the
segments into one per table.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from django.conf import settings

from cases.analytics.schema import CASES, EVENTS, CaseFacts, EventFact

# Per case: the newest export's row. Ties (the same export written twice) are the same facts.
_CASES_VIEW = """
CREATE OR REPLACE VIEW cases AS
SELECT * EXCLUDE (rn) FROM (
  SELECT *, row_number() OVER (PARTITION BY case_id
                               ORDER BY version DESC, history_events DESC, exported_at DESC) rn
  FROM cases_all) WHERE rn = 1
"""
_EVENTS_VIEW = """
CREATE OR REPLACE VIEW events AS
SELECT DISTINCT ON (e.case_id, e.seq) e.*
FROM events_all e JOIN cases c
  ON e.case_id = c.case_id AND e.version = c.version AND e.history_events = c.history_events
ORDER BY e.case_id, e.seq
"""


@dataclass
class Snapshot:
    """A DuckDB connection over the store as it was listed: views `cases` and `events`
    (deduplicated), `cases_all` and `events_all` (every row written). Not thread-safe: take
    a cursor() per thread."""

    db: duckdb.DuckDBPyConnection
    segments: tuple[str, ...]
    read_at: datetime


class Store:
    def __init__(self, uri: str | None = None) -> None:
        uri = uri or str(settings.ANALYTICS_URI)
        if "://" in uri:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            Path(uri).mkdir(parents=True, exist_ok=True)
            self.fs, self.root = pafs.LocalFileSystem(), str(Path(uri).resolve())
        self.uri = uri
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    # --- writing ------------------------------------------------------------------------------

    def write(self, cases: list[CaseFacts], events: list[EventFact]) -> None:
        """Append one export of these cases (their whole timelines in `events`)."""
        if not cases:
            return
        now = datetime.now(UTC)
        for facts in cases:
            facts.exported_at = now
        self._append("events", pa.Table.from_pylist([asdict(e) for e in events], EVENTS))
        self._append("cases", pa.Table.from_pylist([asdict(c) for c in cases], CASES))

    def _append(self, table: str, rows: pa.Table) -> str:
        folder = f"{self.root}/{table}"
        self.fs.create_dir(folder, recursive=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.parquet"
        temp = f"{folder}/.{name}.tmp"
        pq.write_table(rows, temp, filesystem=self.fs, compression="zstd")
        self.fs.move(temp, f"{folder}/{name}")  # a reader never sees half a segment
        return name

    def _segments(self, table: str) -> list[str]:
        selector = pafs.FileSelector(f"{self.root}/{table}", allow_not_found=True)
        return sorted(info.path for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.File and info.path.endswith(".parquet")
                      and not info.base_name.startswith("."))

    def segment_count(self) -> int:
        """How many files both tables are in now (what a compaction would fold)."""
        return len(self._segments("cases")) + len(self._segments("events"))

    def compact(self) -> int:
        """Fold each table's segments into one (deduplicated); returns segments removed.
        Safe beside writers: only the segments it read are removed."""
        snap = self.snapshot()
        db = snap.db.cursor()
        cases = db.sql("SELECT * FROM cases ORDER BY case_id").to_arrow_table()
        events = db.sql("SELECT * FROM events ORDER BY case_id, seq").to_arrow_table()
        if len(snap.segments) <= 2:
            return 0
        self._append("events", events.cast(EVENTS))
        self._append("cases", cases.cast(CASES))
        for path in snap.segments:
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:
                pass  # another compaction took it
        return len(snap.segments)

    # --- reading ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The store as it is now; reused while no segment was added or removed."""
        segments = tuple(self._segments("cases") + self._segments("events"))
        with self._lock:
            if self._snapshot is not None and self._snapshot.segments == segments:
                return self._snapshot
            db = duckdb.connect()
            db.register("cases_all_arrow", self._read("cases", CASES))
            db.register("events_all_arrow", self._read("events", EVENTS))
            db.execute("CREATE TABLE cases_all AS SELECT * FROM cases_all_arrow")
            db.execute("CREATE TABLE events_all AS SELECT * FROM events_all_arrow")
            db.unregister("cases_all_arrow")
            db.unregister("events_all_arrow")
            db.execute(_CASES_VIEW)
            db.execute(_EVENTS_VIEW)
            self._snapshot = Snapshot(db, segments, datetime.now(UTC))
            return self._snapshot

    def _read(self, table: str, schema: pa.Schema) -> pa.Table:
        paths = self._segments(table)
        if not paths:
            return schema.empty_table()
        # A segment removed by a compaction between listing and reading is in the new one.
        parts = []
        for path in paths:
            try:
                parts.append(pq.read_table(path, filesystem=self.fs, schema=schema))
            except FileNotFoundError:
                continue
        return pa.concat_tables(parts) if parts else schema.empty_table()

    # --- the exporter's own state -------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(f"{self.root}/state.json") as f:
                return json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        temp = f"{self.root}/.state.json.tmp"
        with self.fs.open_output_stream(temp) as f:
            f.write(json.dumps(state).encode())
        self.fs.move(temp, f"{self.root}/state.json")


_shared: Store | None = None
_shared_lock = threading.Lock()


def shared() -> Store:
    """The process's store at ANALYTICS_URI (its snapshot cache is shared by every view)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.uri != str(settings.ANALYTICS_URI):
            _shared = Store()
        return _shared
