"""Peer-to-peer live video streaming for the browser (mesh-pull over WebRTC data channels)."""

__version__ = "0.1.0"
