"""The HTTP edge: waiting-room pages and API, admission passes, and the reverse proxy."""
