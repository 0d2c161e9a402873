"""A step process's private directory: empty and its owner's alone when it starts, whatever the last one did."""
from __future__ import annotations

import os

from services.executor.private_dirs import PrivateDirs


async def test_an_empty_directory_as_made_is_used_again() -> None:
    dirs = PrivateDirs()
    first = dirs.take(None)
    assert os.listdir(first) == [] and os.stat(first).st_mode & 0o777 == 0o700
    dirs.give_back(first, None)
    assert dirs.take(None) == first


async def test_a_directory_left_with_something_in_it_is_removed_not_given_again(tmp_path) -> None:
    dirs = PrivateDirs()
    first = dirs.take(None)
    with open(os.path.join(first, "credentials"), "w") as left:
        left.write("x")
    dirs.give_back(first, None)
    second = dirs.take(None)
    assert second != first and os.listdir(second) == []


async def test_a_directory_opened_to_others_is_not_given_again() -> None:
    dirs = PrivateDirs()
    first = dirs.take(None)
    os.chmod(first, 0o777)
    dirs.give_back(first, None)
    assert dirs.take(None) != first and not os.path.exists(first)
