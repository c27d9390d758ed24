"""Limify on Django, in one file: LimifyMiddleware from settings.LIMIFY and limit_view.

Run:  python -m pip install '.[django]' && python examples/django_app.py runserver
Then: curl -i localhost:8000/items   (the 4th call within a minute is a 429)
Or:   python examples/django_app.py   (drives the app with Django's test client)
"""

from __future__ import annotations

import os
import sys

import django
from django.conf import settings

settings.configure(
    DEBUG=True,
    SECRET_KEY="limify-example-only",
    ALLOWED_HOSTS=["localhost", "127.0.0.1", "testserver"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=["limify.adapters.django.LimifyMiddleware"],
    LIMIFY={
        "STORAGE": os.environ.get("LIMIFY_STORAGE", "memory://"),
        "RULES": [{"id": "items", "method": "GET", "path": "/items", "rate": "3/minute"}],
        "TRUSTED_PROXIES": [],
    },
)
django.setup()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from limify.adapters.django import limit_view  # noqa: E402


def items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": ["apple", "pear"]})


@limit_view("prices", "2/minute")
async def prices(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"prices": [101, 99]})


urlpatterns = [path("items", items), path("prices", prices)]

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        from django.test import Client

        client = Client()
        for attempt in range(1, 5):
            response = client.get("/items")
            print(f"GET /items #{attempt}: {response.status_code}", dict(response.headers.items()))
        print("GET /prices (async view):", [client.get("/prices").status_code for _ in range(3)])
