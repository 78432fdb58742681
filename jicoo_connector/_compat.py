"""What Python 3.11 added that the library uses, on Python 3.10 too.

On 3.11 and later these are the standard library's own; on 3.10 they come from the backports
that pyproject.toml installs there only (``exceptiongroup``, ``backports-datetime-fromisoformat``).
Task groups and deadlines are anyio's on every version (the code that uses them imports anyio).
"""

import datetime as dt
import enum
import sys

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup, ExceptionGroup
    from enum import StrEnum

    def parse_datetime(text: str) -> dt.datetime:
        """``datetime.fromisoformat`` as Python 3.11 reads it (``...Z``, any fraction digits)."""
        return dt.datetime.fromisoformat(text)

else:
    from backports.datetime_fromisoformat import datetime_fromisoformat
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

    class StrEnum(str, enum.Enum):
        """``enum.StrEnum``: a member is its value in ``str()``, ``format()`` and comparisons."""

        def __str__(self) -> str:
            return str.__str__(self)

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last: list[object]) -> str:
            return name.lower()  # auto() is the member's name in lower case, as in 3.11

    def parse_datetime(text: str) -> dt.datetime:
        """``datetime.fromisoformat`` as Python 3.11 reads it (``...Z``, any fraction digits)."""
        parsed: dt.datetime = datetime_fromisoformat(text)
        return parsed


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``; on 3.10 the ``__notes__`` list the backport's traceback shows."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        # 3.10's BaseException declares no __notes__; the backport reads it all the same.
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]


__all__ = ["BaseExceptionGroup", "ExceptionGroup", "StrEnum", "add_note", "parse_datetime"]
