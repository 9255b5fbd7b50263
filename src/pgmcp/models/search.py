"""Result model of search_objects."""

from __future__ import annotations

from pgmcp.models import Objects, _Result


class SearchObjectsResult(_Result):
    objects: Objects
    truncated: bool
