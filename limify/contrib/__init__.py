"""Integrations with the libraries Limify is used from.

Each module imports its library on import, so install the matching extra first:
:mod:`limify.contrib.celery` (``limify[celery]``), :mod:`limify.contrib.httpx`
(``limify[httpx]``) and :mod:`limify.contrib.requests` (``limify[requests]``).
"""
