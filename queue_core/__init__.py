"""The line: a fair FIFO waiting line per room in Redis, and the arithmetic around it.

Nothing here knows about HTTP. `store` is the only module that talks to Redis; the Lua
scripts it runs live beside it in `scripts/`.
"""
