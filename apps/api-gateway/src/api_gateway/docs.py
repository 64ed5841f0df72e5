"""/openapi.json and a Swagger UI at /docs served from the swagger-ui-bundle package, so it needs no internet."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from api_gateway.conventions import add_route

SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API gateway - Swagger UI</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"""

# validatorUrl: null, or Swagger UI sends the document to validator.swagger.io whenever /docs is
# opened through an address other than loopback.
INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    validatorUrl: null,
    layout: "StandaloneLayout"
  });
};
"""


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("api_gateway").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


async def openapi_json(_request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi_document()), content_type="application/json")


async def swagger_page(_request: web.Request) -> web.Response:
    return web.Response(text=SWAGGER_PAGE, content_type="text/html")


async def swagger_initializer(_request: web.Request) -> web.Response:
    return web.Response(text=INITIALIZER, content_type="text/javascript")


def add_routes(app: web.Application) -> None:
    add_route(app, ("GET",), "/openapi.json", openapi_json)
    add_route(app, ("GET",), "/docs", swagger_page)
    # Ahead of the static folder, which holds swagger-ui-bundle's own initializer (it shows the petstore).
    app.router.add_get("/docs/swagger-initializer.js", swagger_initializer, allow_head=False)
    app.router.add_static("/docs/", swagger_ui_path)
