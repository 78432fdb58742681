"""What a sandbox instance is started with: seed, data size, keys, knobs. Plain data only."""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_SANDBOX_KEY", "SandboxConfig"]

# A sandbox key, not a secret: it only opens the local fake server.
DEFAULT_SANDBOX_KEY = "sk_test_sandbox"


@dataclass(frozen=True)
class SandboxConfig:
    """Start-up settings of the fake Jicoo server.

    ``denied`` maps an API key to the OpenAPI operationIds it gets 403 for
    (e.g. ``{"sk_test_limited": frozenset({"listEventTypes"})}``); every key in
    ``api_keys`` or ``denied`` is valid. ``faults`` is the JSON fault profile
    (see ``faults.py``), also settable at run time through ``POST /_sandbox/faults``.
    ``anchor_date`` is the day the seeded data is spread around (default: today, UTC);
    fix it for byte-identical data across days.
    """

    seed: int = 7
    bookings: int = 2000
    api_keys: tuple[str, ...] = (DEFAULT_SANDBOX_KEY,)
    denied: Mapping[str, frozenset[str]] = field(default_factory=dict)
    anchor_date: dt.date | None = None
    past_days: int = 60
    future_days: int = 30
    faults: Mapping[str, object] = field(default_factory=dict)
    journal_path: Path | None = None

    def valid_keys(self) -> frozenset[str]:
        return frozenset(self.api_keys) | frozenset(self.denied)

    def effective_anchor(self) -> dt.date:
        return self.anchor_date or dt.datetime.now(dt.UTC).date()
