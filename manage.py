#!/usr/bin/env python
import os
import sys

# PostgreSQL's code for a table the database does not have (undefined_table): a database
# not migrated. SQLite says so with an OperationalError ("no such table"), PostgreSQL with
# a ProgrammingError, as it says an SQL bug (a syntax error, 42601), which keeps its
# traceback.
UNDEFINED_TABLE = "42P01"

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except (ImproperlyConfigured, OperationalError, ProgrammingError) as error:
        # An operator's mistake (a setting that cannot work, a database down or not yet
        # migrated), not a bug: its message alone, where 50 to 87 lines of Django's frames
        # hid it. --traceback shows them, as it does for a command's own errors.
        if "--traceback" in sys.argv:
            raise
        message = str(error).strip()
        if isinstance(error, ProgrammingError):
            if getattr(error.__cause__, "sqlstate", None) != UNDEFINED_TABLE:
                raise
            # Its first line: the rest quotes the query Django made, and points into it.
            message = message.splitlines()[0]
        said = f"{type(error).__name__}: {message}"
        if "no such table" in str(error) or "does not exist" in str(error):
            said += "\nThe database's tables are not made yet: python manage.py migrate"
        sys.exit(said)
