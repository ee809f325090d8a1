"""Parlor's media node: WebRTC audio rooms mixed once per Space (aiortc)."""
