"""Names shared across processes: room slugs, log names, channel-layer groups, socket channels.

Each is declared here once; groups and channels are built only through these functions.
"""

from __future__ import annotations

import re
from typing import Any

# A slug becomes part of channel-layer group names, which accept only these characters.
ROOM_SLUG_CHARS = r"[A-Za-z0-9_-]{1,64}"
ROOM_SLUG_PATTERN = rf"^{ROOM_SLUG_CHARS}$"
ROOM_SLUG_RE = re.compile(ROOM_SLUG_CHARS)
UUID_CHARS = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The name a configured log file is followed by (`SWITCHBOARD_TAIL_FILES`), never a path.
LOG_NAME_CHARS = r"[A-Za-z0-9_-]{1,64}"
LOG_NAME_PATTERN = rf"^{LOG_NAME_CHARS}$"

# Socket channels a client may subscribe to.
JOBS_MINE = "jobs:mine"
ROOMS_MINE = "rooms:mine"
ROOM_CHANNEL_PREFIX = "room:"
JOB_CHANNEL_PREFIX = "job:"
LOG_CHANNEL_PREFIX = "log:"
CHANNEL_PATTERN = (
    rf"^(room:{ROOM_SLUG_CHARS}|job:{UUID_CHARS}|jobs:mine|rooms:mine|log:{LOG_NAME_CHARS})$"
)

# Types of channel-layer events (not socket frames).
ROOM_MESSAGE = "room.message"
ROOM_CHANGE = "room.change"  # a message edited or deleted: an event of the room's sequence
ROOM_TYPING = "room.typing"
ROOM_ACCESS_ENDED = "room.access_ended"  # a user may no longer read a room: their sockets leave it
PRESENCE_CHANGED = "presence.changed"
JOB_UPDATE = "job.update"
JOB_LOG = "job.log"
JOB_OUTPUT = "job.output"
JOB_SHARE_ENDED = "job.share_ended"  # a share link was revoked: its holders' sockets stop
ACCOUNT_REVOKED = "account.revoked"
# To a user's account group: their read state or view of a room changed, or they lost it.
ROOM_READ = "room.read"  # a member's read position moved: their other sockets, and rooms:mine
ROOM_STATE = "room.state"  # a room as a member sees it now (rooms:mine)
ROOM_REMOVED = "room.removed"  # a member may no longer read a room, or it is gone (rooms:mine)


def room_channel(slug: str) -> str:
    """The socket channel of a room."""
    return f"{ROOM_CHANNEL_PREFIX}{slug}"


def job_channel(job_id: Any) -> str:
    """The socket channel of one job."""
    return f"{JOB_CHANNEL_PREFIX}{job_id}"


def log_channel(name: str) -> str:
    """The socket channel of a configured log file."""
    return f"{LOG_CHANNEL_PREFIX}{name}"


def room_group(slug: str) -> str:
    """Channel-layer group of a room (slugs are limited to characters groups accept)."""
    return f"room.{slug}"


def job_group(job_id: Any) -> str:
    """Channel-layer group of one job's events."""
    return f"job.{job_id}"


def owner_group(owner_id: int) -> str:
    """Channel-layer group of every job event of one owner (`jobs:mine`)."""
    return f"jobs.user.{owner_id}"


def account_group(user_id: int) -> str:
    """Channel-layer group of one user's sockets (in every process): sign-outs reach them."""
    return f"account.{user_id}"
