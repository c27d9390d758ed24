"""Framework adapters: ASGI (Starlette, FastAPI), Flask and Django.

Each adapter turns a framework request into a :class:`~limify.RequestContext`,
asks a limiter for a decision and answers in the framework's terms; the
responses, headers and settings they share live in :mod:`limify.adapters.http`.
"""
