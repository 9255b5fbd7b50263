"""The web console: one page served by the server itself, at ``/console``.

What the agents did to the databases (query history, blocked and slow
statements with their plans) and how the server is doing (connections, health
warnings, live charts of the last hour from the Monitor's time series).

- :mod:`.routes`: the ASGI app (page, static assets, login, JSON API), mounted
  in front of the HTTP transport by :func:`pgmcp.http.build_http_app`.
- :mod:`.api`: the data of each ``/console/api/…`` endpoint.
- :mod:`.session`: the login form's signed session cookie.
- :mod:`.standalone`: ``CONSOLE_PORT``, the console alone on ``127.0.0.1:P``
  beside a stdio server.
- ``static/``: the page (plain HTML/CSS/JS) and ``static/vendor/`` uPlot,
  vendored by ``make console-assets`` (console-ui/build.mjs).
"""

from pgmcp.console.routes import PREFIX, Console
from pgmcp.console.standalone import console_server

__all__ = ["PREFIX", "Console", "console_server"]
