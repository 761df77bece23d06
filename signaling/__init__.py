"""Signaling and bootstrap server: introduces the peers of a channel, relays their WebRTC offers,
answers and ICE candidates over /ws, and serves the pages. It carries no video.

Embed it with `signaling.app.start_server(ServerConfig(port=0))`; run it with `streamer serve` or
`python -m signaling`, alone (everything in memory) or as one process of a cluster sharing
channels through Redis (`--redis URL`: signaling.redis_directory). The wire contract is
docs/signaling.md.
"""
