"""Where outputs are kept on a file system: Django's file system storage, except that a
name never has bytes written through it that another name may share.

An output re-used from an earlier request is a hard link to that request's file (link()):
the same bytes, no copy. Truncating a name that is such a link would change the other
request's output too, so a name is removed before it is written again; expiring either
request removes only its own names.
"""

import contextlib
import errno
import os
import shutil
from typing import IO, Any

from django.core.files.storage import FileSystemStorage

# A file system without hard links, a storage folder across devices, or a file linked as
# often as the file system allows (65,000 on ext4): copied instead.
_NO_LINK = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


class OutputStorage(FileSystemStorage):
    def save(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        # Output names come from row ids: a task run again writes the same name.
        if name is not None:
            self._name_free(name)
        return super().save(name, content, max_length)

    def link(self, existing: str, name: str) -> None:
        """The stored file `existing` under `name` too: a hard link, or a copy where the
        file system will not link it."""
        source, target = self.path(existing), self.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._name_free(name)
        try:
            os.link(source, target)
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            shutil.copyfile(source, target)

    def _name_free(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(name))
