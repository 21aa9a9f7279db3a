"""Where outputs are kept on a file system: Django's file system storage, except that a
name never has bytes written through it that another name may share, and never holds
part of a file.

An output re-used from an earlier request is a hard link to that request's file (link()):
the same bytes, no copy. Truncating a name that is such a link would change the other
request's output too, so a name is removed before it is written again; expiring either
request removes only its own names.

A file is written under a name of its own beside its name, then renamed into place: a
write the storage refuses part way (a full disk, a quota) left a file of zero or some
bytes under the output's name, which the web served as the image, and an output CSV
nobody would delete. The partial file is removed, and the error raised.
"""

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
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

    def _save(self, name: str, content: Any) -> str:
        partial = _partial_name(name)
        with _removed_if_unfinished(self.path(partial)):
            written: str = super()._save(partial, content)  # type: ignore[misc]  # not in the stubs
            os.replace(self.path(written), self.path(name))
        return name

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
            partial = self.path(_partial_name(name))
            with _removed_if_unfinished(partial):
                shutil.copyfile(source, partial)
                os.replace(partial, target)

    def _name_free(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(name))


def _partial_name(name: str) -> str:
    """A name beside `name` for its bytes while they are written: random, so that two
    writers of one name (a task delivered twice) never write into one file."""
    return f"{name}.{secrets.token_hex(8)}.partial"


@contextlib.contextmanager
def _removed_if_unfinished(path: str) -> Iterator[None]:
    """The partial file at path removed if what writes it and renames it into place fails."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
