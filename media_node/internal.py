"""What a node's front, its workers and other nodes say to each other over HTTP, beside
the public signaling (docs/media-contract.md, section 7)."""

# Every request to a worker carries the node's worker secret: workers listen on loopback
# only, and this keeps other processes of the machine from posing as the front.
WORKER_SECRET_HEADER = "X-Parlor-Worker-Secret"  # noqa: S105 (a header name)
# On a POST the front forwards to a worker that is to relay the Space: where the
# worker subscribes to the Space's feed (relay.FeedSource, JSON).
FEED_HEADER = "X-Parlor-Feed"
# On a request one node's front forwards to another's: the forwarding node's id. A
# forwarded request is never forwarded again, whatever it says.
FORWARDED_HEADER = "X-Parlor-Forwarded-By"

STATUS_PATH = "/internal/status"
INBOUND_PATH = "/internal/inbound"
COMMANDS_PATH = "/internal/commands"
FEED_PATH = "/internal/spaces/{space_id}/feed"
SESSIONS_PATH = "/media/spaces/{space_id}/sessions"
SESSION_PATH = "/media/spaces/{space_id}/sessions/{session_id}"
