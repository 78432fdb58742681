"""``datetime.fromisoformat`` as Python 3.11 reads it (``...Z``, any fraction digits), on 3.10
too through the backport pyproject.toml installs there only. The sandbox is its own
distribution, so it cannot share jicoo_connector's copy of this."""

import datetime as dt
import sys

if sys.version_info >= (3, 11):

    def parse_datetime(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text)

else:
    from backports.datetime_fromisoformat import datetime_fromisoformat

    def parse_datetime(text: str) -> dt.datetime:
        parsed: dt.datetime = datetime_fromisoformat(text)
        return parsed
