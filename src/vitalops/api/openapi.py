"""The API contract: the OpenAPI document and the explorer at ``/docs``, served without a network.

The document declares the bearer scheme (so the explorer has an Authorize button) and, on every
route, the problem+json responses it can give with their real shape (``problems.Problem``). The
explorer's JavaScript and CSS come from the ``swagger-ui-bundle-v2`` package installed beside
VitalOps, never from a CDN: hospital networks are closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from vitalops.api.problems import PROBLEM_JSON, Problem
from vitalops.errors import NotFound

ASSETS_PATH = "/docs/assets"
#: The explorer's files, by the name they are served under.
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_DESCRIPTIONS = {
    401: "No valid API key: send 'Authorization: Bearer <key>'",
    403: "The key's role does not permit this, or a governance rule forbids it",
    404: "No such resource",
    409: "A conflict: a duplicate, an illegal state transition, or a gate that blocks",
    422: "The request does not match the expected shape (the fields are named, never their values)",
}


def swagger_ui_folder() -> Path:
    """The folder of the installed Swagger UI distribution."""
    import swagger_ui_bundle  # the swagger-ui-bundle-v2 package

    return Path(swagger_ui_bundle.swagger_ui_path)


def _problem_response(status: int) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, built once per app."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            statuses: list[int] = []
            if operation.get("security"):  # declared by deps.current_principal's bearer scheme
                statuses += [401, 403]
            if "{" in path:
                statuses.append(404)
            if method != "get":
                statuses += [404, 409]
            if operation.get("parameters") or operation.get("requestBody"):
                statuses.append(422)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(set(statuses)):
                responses[str(status)] = _problem_response(status)
    app.openapi_schema = document
    return document


def install_docs(app: FastAPI) -> None:
    """Serve ``/openapi.json``, ``/docs`` and the explorer's assets from the package (call after the routers)."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_document() -> JSONResponse:
        return JSONResponse(build_openapi(app))

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": False},
        )

    @app.get(ASSETS_PATH + "/{asset}", include_in_schema=False)
    def docs_asset(asset: str) -> FileResponse:
        media_type = ASSETS.get(asset)
        if media_type is None:
            raise NotFound("no such asset")
        return FileResponse(swagger_ui_folder() / asset, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400"})
