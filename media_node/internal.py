"""What a node's front, its workers and other nodes say to each other over HTTP, beside
the public signaling (docs/media-contract.md, section 7)."""

from __future__ import annotations

import json
from dataclasses import dataclass

# Every request to a worker carries the node's worker secret: workers listen on loopback
# only, and this keeps other processes of the machine from posing as the front.
WORKER_SECRET_HEADER = "X-Parlor-Worker-Secret"  # noqa: S105 (a header name)
# On a POST the front forwards to a worker that is to relay the Space: where the
# worker subscribes to the Space's feed (relay.FeedSource, JSON).
FEED_HEADER = "X-Parlor-Feed"
# On a request one node's front forwards to another's: the forwarding node's id. A
# forwarded request is never forwarded again, whatever it says.
FORWARDED_HEADER = "X-Parlor-Forwarded-By"
# On a POST the front forwards to a worker: the join's place in the order in which the
# front took the node's joins (a counter of the front's). A session admitted later
# replaces a user's earlier ones, on whichever worker they are.
ADMISSION_HEADER = "X-Parlor-Admission"
# On a POST the front forwards to a worker: the latest authority the front has been told
# of the joining user (authority.Authority.as_list, JSON), for a worker restarted since.
AUTHORITY_HEADER = "X-Parlor-Authority"

STATUS_PATH = "/internal/status"
INBOUND_PATH = "/internal/inbound"
COMMANDS_PATH = "/internal/commands"
FEED_PATH = "/internal/spaces/{space_id}/feed"
# The front to the node's other workers once a join is admitted: close the user's
# sessions of the Space admitted before it (JSON: user_id, admission).
REPLACED_PATH = "/internal/spaces/{space_id}/replaced"
SESSIONS_PATH = "/media/spaces/{space_id}/sessions"
SESSION_PATH = "/media/spaces/{space_id}/sessions/{session_id}"

# The public signaling's limit on an offer's size.
MAX_SDP_BYTES = 64 * 1024
# Feeds between workers and nodes are WebSockets kept alive by pings this often.
WS_HEARTBEAT_SECONDS = 5.0


@dataclass(frozen=True)
class FeedSource:
    """Where a relay room subscribes: given by the node's front with the request."""

    url: str
    headers: dict[str, str]
    # The node that owns the Space, when it is another node.
    origin: str | None = None

    @classmethod
    def parse(cls, header: str) -> FeedSource:
        data = json.loads(header)
        return cls(url=str(data["url"]), headers=dict(data["headers"]), origin=data.get("origin"))

    def header(self) -> str:
        return json.dumps({"url": self.url, "headers": self.headers, "origin": self.origin})
