"""The one error of the node's HTTP layers: a status, a code and a message, which the
front and the workers render as `{"error": code, "message": message}`."""

from __future__ import annotations


class SignalingError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
