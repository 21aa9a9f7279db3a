"""The output storage on a file system: a file the storage refuses part way leaves nothing
under its name, or beside it. Faked here: the refusal, as ENOSPC raised from the bytes
being written, since a full disk cannot be made without root; tests/processing/
test_faults.py fills a worker's room for real."""

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.base import ContentFile, File

from processing.storage import OutputStorage

NAME = "output_images/5b0c/7.jpg"


class FullAfterFirstChunk(File):  # type: ignore[type-arg]
    """A file whose first chunk is written, then the disk is full."""

    def __init__(self) -> None:
        super().__init__(None, name="7.jpg")

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield b"\xff\xd8" + b"\0" * 1000
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_write_refused_part_way_leaves_no_file(tmp_path: Path) -> None:
    # Given a storage holding an earlier output under the name
    storage = OutputStorage(location=tmp_path)
    storage.save(NAME, ContentFile(b"earlier"))

    # When the name is written again and the disk fills part way
    with pytest.raises(OSError, match="No space left") as raised:
        storage.save(NAME, FullAfterFirstChunk())

    # Then the error is raised, and no file is left: not a part under the name, nor beside it
    assert raised.value.errno == errno.ENOSPC
    assert files_under(tmp_path) == []


def test_a_write_is_in_place_whole_under_its_name_alone(tmp_path: Path) -> None:
    storage = OutputStorage(location=tmp_path)
    assert storage.save(NAME, ContentFile(b"whole")) == NAME
    assert files_under(tmp_path) == [NAME]
    assert (tmp_path / NAME).read_bytes() == b"whole"


def test_a_copy_refused_part_way_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an output, on a file system that will not link files (across devices)
    storage = OutputStorage(location=tmp_path)
    storage.save("output_images/old/1.jpg", ContentFile(b"\xff\xd8" + b"\0" * 1000))

    def no_link(source: str, target: str) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def copy_till_full(source: str, target: str) -> None:
        Path(target).write_bytes(b"\xff\xd8")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(shutil, "copyfile", copy_till_full)

    # When it is re-used under another name and the disk fills part way through the copy
    with pytest.raises(OSError, match="No space left"):
        storage.link("output_images/old/1.jpg", NAME)

    # Then only the output copied from is left
    assert files_under(tmp_path) == ["output_images/old/1.jpg"]
