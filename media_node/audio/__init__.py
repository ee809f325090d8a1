"""A Space's audio: the room and its participants, the mixer, the jitter buffers, the
relays, and how the room sends (senders.py)."""
