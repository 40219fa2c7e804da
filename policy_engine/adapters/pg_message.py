"""One gate step and its flush wait in one simple-protocol message (one round trip).

A step (`ledger_reserve`, `ledger_settle`) commits asynchronously so it holds its row locks
only for its own work; the caller may be answered only once its commit is on disk, which a
second, synchronously committed transaction waits for (docs/postgresql-ledger.md). The
extended protocol takes one statement per message, so the two cost two round trips and
two passes through psycopg per step. The simple protocol takes several statements in one
message, each transaction bounded by its own BEGIN / COMMIT; it takes no bound parameters,
so the values are sent as literals to statements prepared once per connection (``EXECUTE
name(...)``: the server neither resolves nor plans the call again), each string escaped by
libpq (``PQescapeLiteral``, C:
psycopg's text array form escapes every element with a regular expression, milliseconds
per call for the replay material), arrays written as ``ARRAY[...]`` of those literals, and
numbers in their exact decimal form (``repr`` of a float reads back as the same double).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: the flush wait: a transactional WAL message (no table, no row to contend on) gives its
#: transaction an id and a WAL record, so its synchronous commit returns only once the WAL
#: is flushed past it, hence past the step committed before it
FLUSH_WAIT = "SELECT pg_logical_emit_message(true, 'policy_engine.flush', '')"


def literal(value: Any, escape: Any) -> str:
    """``value`` as a PostgreSQL literal; ``escape``: the connection's `psycopg.pq.Escaping`
    (strings are escaped for its encoding and its standard_conforming_strings)."""
    if isinstance(value, str):
        return str(escape.escape_literal(value.encode()), "utf-8")
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"'{value!r}'::float8"
    if isinstance(value, (list, tuple)):
        if not value:
            return "'{}'::text[]"
        if all(isinstance(v, str) for v in value):
            quote = escape.escape_literal
            return "ARRAY[" + str(b",".join([quote(v.encode()) for v in value]), "utf-8") + "]::text[]"
        return "ARRAY[" + ",".join([literal(v, escape) for v in value]) + "]::text[]"
    raise TypeError(f"no literal for {type(value).__name__}")


def execute(name: str, params: Sequence[Any], escape: Any) -> str:
    """``EXECUTE name(literal, ...)``: a statement prepared on this connection, its values
    as literals."""
    return f"EXECUTE {name}({', '.join([literal(v, escape) for v in params])})"


def step_message(step: str, flush: str = FLUSH_WAIT) -> str:
    """``BEGIN; <step>; COMMIT; <flush wait>``: the step in its own transaction, then the
    flush wait in the next (the step function turns off synchronous commit for its own
    transaction only). ``flush``: another statement that writes WAL in its transaction
    (`ledger_flush_usage`: the flush wait that also reads the usage)."""
    return f"BEGIN; {step}; COMMIT; {flush}"
