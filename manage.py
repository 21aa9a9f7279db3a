#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except (ImproperlyConfigured, OperationalError) as error:
        # An operator's mistake (a setting that cannot work, a database down or not yet
        # migrated), not a bug: its message alone, where 50 to 87 lines of Django's frames
        # hid it. --traceback shows them, as it does for a command's own errors.
        if "--traceback" in sys.argv:
            raise
        said = f"{type(error).__name__}: {str(error).strip()}"
        if "no such table" in str(error) or "does not exist" in str(error):
            said += "\nThe database's tables are not made yet: python manage.py migrate"
        sys.exit(said)
