"""Many rows in one statement, where the ORM would send one statement per row.

Used where rows go by the thousand: the upload's inserts (COPY, PostgreSQL), a batch's
claim (UPDATE ... RETURNING), its results and a finished request's output URLs
(UPDATE ... FROM VALUES ... RETURNING,
PostgreSQL and SQLite 3.35+, which config/settings.py checks for). Each takes its
columns from the model, so a field added to the model needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connection, models
from django.db.models import QuerySet, sql


def copy_rows(
    cursor: Any,
    model: type[models.Model],
    rows: Iterable[dict[str, object]],
    *,
    primary_key: bool = False,
) -> None:
    """COPY rows into model's table (PostgreSQL). A field a row leaves out gets its model
    default; the primary key is given by each row, or (primary_key=False) by its sequence."""
    fields = [
        field for field in model._meta.concrete_fields if primary_key or not field.primary_key
    ]
    defaults = {field.attname: field.get_default() for field in fields}
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row.get(field.attname, defaults[field.attname]) for field in fields])


def update_from_rows(
    queryset: QuerySet[Any], *, key: str, fields: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Set `fields` on the rows of queryset whose `key` equals a row's `key`, from that row,
    in one statement; the key of every table row changed (a key once per row it matched).

    For a batch of eight images this is one round trip where `update()` per image was eight,
    most of a batch's recording time.
    """
    if not rows:
        return []
    model = queryset.model
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [model._meta.get_field(name) for name in (key, *fields)]
    # The incoming rows' columns are named column1, column2, ... as VALUES names them.
    names = [f"column{number}" for number in range(1, len(columns) + 1)]
    assignments = ", ".join(
        f"{quote(field.column)} = incoming.{name}"
        for field, name in zip(columns[1:], names[1:], strict=True)
    )
    incoming, params = _incoming(columns, names, rows)
    # queryset must filter on its own table's columns only: the statement joins no other.
    compiler = queryset.query.get_compiler(connection=connection)
    try:
        where, where_params = compiler.compile(queryset.query.where)
    except FullResultSet:  # no filter at all
        where, where_params = "1 = 1", ()
    except EmptyResultSet:  # a filter nothing can match, such as pk__in=[]
        return []
    key_column = f"{table}.{quote(columns[0].column)}"
    # Only names from the model and placeholders go into the text; the values are parameters.
    sql = (
        f"UPDATE {table} SET {assignments} "  # noqa: S608
        f"FROM {incoming} "
        f"WHERE {key_column} = incoming.{names[0]} AND {where} "
        f"RETURNING {key_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *where_params])
        return [changed for (changed,) in cursor.fetchall()]


def _incoming(
    columns: list[models.Field[Any, Any]], names: list[str], rows: Sequence[dict[str, Any]]
) -> tuple[str, list[Any]]:
    """The rows as a table named incoming to join, and its parameters.

    PostgreSQL: one typed array per column, unnested. The statement's text and parameters
    stay the same whatever the number of rows: psycopg converts it from its cache and
    PostgreSQL parses a few hundred characters (a batch's VALUES of 32 rows by 24 columns
    cost psycopg alone about 4 ms to convert). SQLite: VALUES, a row each."""
    values = [
        [field.get_db_prep_save(row[field.name], connection) for row in rows] for field in columns
    ]
    if connection.vendor != "postgresql":
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        rows_params = [value for row in zip(*values, strict=True) for value in row]
        return f"(VALUES {', '.join([row_sql] * len(rows))}) AS incoming", rows_params
    arrays = ", ".join(f"%s::{_array_type(field)}" for field in columns)
    return f"unnest({arrays}) AS incoming({', '.join(names)})", values


def _array_type(field: models.Field[Any, Any]) -> str:
    # Text stays text, not varchar(n): a cast would cut a long value where the column's own
    # check refuses it.
    if field.get_internal_type() in {"CharField", "TextField"}:
        return "text[]"
    return f"{field.db_type(connection)}[]"


def update_returning(
    queryset: QuerySet[Any], *, values: dict[str, Any], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """queryset.update(**values), and the `returning` fields of every row it changed (as
    the database gives them, with none of the fields' conversions), in one statement where
    update() and a query for what it changed were two."""
    query = queryset.query.chain(sql.UpdateQuery)
    assert isinstance(query, sql.UpdateQuery)
    query.add_update_values(values)
    try:
        statement, params = query.get_compiler(connection=connection).as_sql()
    except EmptyResultSet:  # a filter nothing can match, such as pk__in=[]
        return []
    if not statement:  # nothing to set
        return []
    columns = ", ".join(
        connection.ops.quote_name(str(queryset.model._meta.get_field(name).column))
        for name in returning
    )
    with connection.cursor() as cursor:
        cursor.execute(f"{statement} RETURNING {columns}", params)
        return [tuple(row) for row in cursor.fetchall()]


def insert_from_select(
    model: type[models.Model],
    *,
    taken: dict[str, tuple[str, Sequence[Any]]],
    from_sql: str,
    params: Sequence[Any],
) -> int:
    """INSERT INTO model's table ... SELECT ... in one statement: the columns named in taken
    from their SELECT expressions (with their parameters), every other column its model
    default; from_sql is the SELECT's FROM and WHERE, with params. The rows inserted."""
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    expressions: list[str] = []
    select_params: list[Any] = []
    for field in fields:
        if field.attname in taken:
            expression, expression_params = taken[field.attname]
            expressions.append(expression)
            select_params += list(expression_params)
        else:
            expressions.append("%s")
            select_params.append(field.get_db_prep_save(field.get_default(), connection))
    columns = ", ".join(quote(str(field.column)) for field in fields)
    # Only names from the model, expressions written by the caller and placeholders go
    # into the text; the values are parameters.
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "
        f"SELECT {', '.join(expressions)} {from_sql}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *params])
        return int(cursor.rowcount)
