"""SQL that differs between SQLite and PostgreSQL, written once as SQLAlchemy constructs.

`tag_has(tags_json, field, value)`: the entry's tags (a JSON object of lists, stored as text)
hold `value` under `field`. SQLite walks the list with `json_each`; PostgreSQL asks the JSONB
containment operator.

`queue_key()`: the order of the job queue (engine/storage/repository/queue.py), used by every query
that picks or counts queued jobs.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..models import Generation


def queue_key() -> ColumnElement[Any]:
    """Where a queued job stands in line, lower first: its `queue_order`, or its id if never moved."""
    return func.coalesce(Generation.queue_order, Generation.id)


class tag_has(FunctionElement[bool]):  # noqa: N801 - reads like the SQL function it stands for
    type = Boolean()
    name = "tag_has"
    inherit_cache = True

    def __init__(self, column: Any, field: str, value: str) -> None:
        super().__init__(column, literal(f'$."{field}"'), literal(field), literal(value))


@compiles(tag_has, "sqlite")
def _tag_has_sqlite(element: tag_has, compiler: Any, **kw: Any) -> str:
    column, path, _field, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({column}, {path}) WHERE json_each.value = {value})"


@compiles(tag_has, "postgresql")
def _tag_has_postgresql(element: tag_has, compiler: Any, **kw: Any) -> str:
    column, _path, field, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({column} AS JSONB) -> CAST({field} AS TEXT)) @> jsonb_build_array(CAST({value} AS TEXT))"
