"""Starlette and FastAPI: a pure ASGI middleware and a per-route dependency."""
