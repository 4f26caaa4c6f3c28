"""Checking a student's answer in a notebook, without printing the answer itself.

>>> check(None, 214)
no answer yet: replace None with your number and run the cell again
>>> check(213, 214)
not yet: 213 is too small; try again
>>> check(214, 214)
✔ right: 214
>>> check([3, 4], (3, 4))          # a list or a tuple: the same pair
✔ right: [3, 4]
"""

from __future__ import annotations

__all__ = ["check"]


def check(answer, expected) -> None:
    """Print whether ``answer`` equals ``expected`` (computed in the notebook, e.g. by torch)."""
    if answer is None:
        print("no answer yet: replace None with your number and run the cell again")
    elif _same(answer, expected):
        print(f"✔ right: {answer}")
    elif isinstance(answer, int | float) and isinstance(expected, int | float):
        direction = "small" if answer < expected else "large"
        print(f"not yet: {answer} is too {direction}; try again")
    else:
        print(f"not yet: {answer!r} is not it; try again")


def _same(answer, expected) -> bool:
    """Equal, with lists and tuples of the same items counting as the same answer."""
    if isinstance(answer, list | tuple) and isinstance(expected, list | tuple):
        return len(answer) == len(expected) and all(map(_same, answer, expected))
    return answer == expected
