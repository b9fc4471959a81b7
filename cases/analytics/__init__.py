"""The case export: every case's facts in Parquet, outside Django's database (issue 24).

ADR-002's analytics side. Derived, never a second source of truth: `export_cases --rebuild`
makes it again from the event histories by the workflow's own projection. It serves reports
over time (/reports/) and ended cases whose executions are past retention.

  schema    the columns of the two tables (cases, events) and what each fact means
  facts     a case's facts from its Projection (workers/projection.py): the one derivation
  store     append-only Parquet segments under ANALYTICS_URI, read deduplicated with DuckDB
  exporter  which cases changed (Visibility, by watermark) and the rebuild from histories
  reports   the figures over a range, per dimension, in the viewer's time zone
"""
