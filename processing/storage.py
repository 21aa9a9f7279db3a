"""Where outputs are kept on a file system: Django's file system storage, except that
writing a name again replaces its file instead of truncating it in place.

An output re-used from an earlier request is a hard link to that request's file
(reuse.output_copy): the same bytes, no copy. Truncating a name that is such a link would
change the other request's output too; replacing it leaves the other name as it was.
"""

import contextlib
import os
from typing import IO, Any

from django.core.files.storage import FileSystemStorage


class OutputStorage(FileSystemStorage):
    def save(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        # Output names come from row ids: a task run again writes the same name.
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))
        return super().save(name, content, max_length)
