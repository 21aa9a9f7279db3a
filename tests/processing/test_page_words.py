"""The request page's size change in words: an output that grew reads "larger"."""

import pytest

from processing.page_words import size_change_words


@pytest.mark.parametrize(
    ("percent", "words"),
    [(None, None), (74, "74% smaller"), (0, "the same size"), (-31, "31% larger")],
)
def test_a_size_change_reads_as_smaller_larger_or_the_same(
    percent: int | None, words: str | None
) -> None:
    assert size_change_words(percent) == words
