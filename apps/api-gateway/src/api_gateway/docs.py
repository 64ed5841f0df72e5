"""/openapi.json and a Swagger UI at /docs served from the swagger-ui-bundle package, so it needs no internet."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

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

INITIALIZER = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"
  });
};
"""


@cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("api_gateway").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return Response(json.dumps(openapi_document()), mimetype="application/json")


@bp.get("/docs")
@bp.get("/docs/")
def swagger_page() -> Response:
    return Response(SWAGGER_PAGE, mimetype="text/html")


@bp.get("/docs/swagger-initializer.js")
def swagger_initializer() -> Response:
    return Response(INITIALIZER, mimetype="text/javascript")


@bp.get("/docs/<path:filename>")
def swagger_asset(filename: str) -> Response:
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)
