"""OpenAI's Realtime API over WebSocket: sessions whose every model call is one of the gateway's
own HTTP endpoints, run in process (loopback.py)."""
