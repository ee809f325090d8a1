"""The control plane's side of the audio: placement on media nodes, join tokens, TURN
credentials, presence from the nodes' events, and the commands sent to them."""
