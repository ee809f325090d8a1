"""A Parlor participant in Python: what a client does, as the browser client does it.

`tones` hums a microphone and reads a spectrum, `session` is one WebRTC session with a
media node (WHIP/WHEP-shaped signaling), and `participant` joins a Space through the API
and keeps its audio up: it notices a lost connection within seconds and joins again by
itself. `python -m local.peer` is its command line; the tests and benchmarks drive it."""
