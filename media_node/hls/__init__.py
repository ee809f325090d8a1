"""A Space's one mix as HLS: AAC-LC in MPEG-TS segments and a live playlist, uploaded to
S3 as they are made, for listeners beyond WebRTC's reach and for the replay
(docs/hls.md, docs/media-contract.md section 9)."""
