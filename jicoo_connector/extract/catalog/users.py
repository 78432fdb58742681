"""users: the organization's users, one listing a day."""

import pyarrow as pa

from jicoo_connector.extract.sources import SnapshotSource, listing
from jicoo_connector.tables import UTC_MS, TableSpec, column

USERS_SPEC = TableSpec(
    "users",
    (
        column("uid", "uid", pa.string(), nullable=False, doc="The user's id."),
        column("name", "name", pa.string(), doc="The user's name."),
        column("email", "email", pa.string(), doc="The user's email."),
        column("role", "role", pa.string(), doc="The user's role in the organization."),
        column("profile_image", "profileImage", pa.string(), doc="The URL of the user's picture."),
        column("created_at", "createdAt", UTC_MS, doc="When the user was added (UTC)."),
        column("updated_at", "updatedAt", UTC_MS, doc="When the user last changed (UTC)."),
    ),
    ("uid",),
    "snapshot",
    description="The organization's users, a snapshot per day.",
)

USERS = SnapshotSource(
    USERS_SPEC,
    ("GET /v1/organization_users",),
    listing(lambda client: client.list_organization_users()),
)
