"""The REST adapter: the ml v1 API (and a few documented extras) over the services.

``create_app(runtime)`` in :mod:`mlengine.api.app` builds the ASGI app. One module per
concern: ``routes_*`` (one per v1 resource collection), ``rendering`` (the Google JSON
wire conventions), ``errors`` (the error envelope), ``auth`` (bearer tokens),
``observability`` (health, readiness, metrics). See ``docs/rest-api.md``.

Path syntax: v1 custom methods end a path with ``:verb`` (``jobs/{job}:cancel``). Starlette's
``{param}`` matches up to the next ``/`` and would swallow the suffix, so ids in paths use the
``segment`` convertor registered here, which also stops at ``:``. Every route module imports
this package first, so the convertor exists before any route is compiled.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class SegmentConvertor(Convertor[str]):
    """A path segment without ``/`` or ``:`` (``{job:segment}`` in a route path)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", SegmentConvertor())
