"""Packets on the wire: the fast send path (fanout.py over native/), the fast receive
path, SRTP keys, the ICE mux, and the seams into aiortc, aioice and pylibsrtp."""
