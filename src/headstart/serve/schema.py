"""The OpenAPI 3.1 description of the server's API, served at ``/openapi.json``.

Written out as data rather than generated from docstrings: Starlette's generator reads YAML from
each endpoint's docstring, which would add PyYAML to the ``serve`` extra for a dozen entries, and
a test checks that every route of the app is described here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from headstart._version import __version__

__all__ = ["openapi_schema"]

_ERROR = {
    "description": "refused; the body says why",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_IMAGES_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                    }
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_NAME_PARAM = {
    "name": "filename",
    "in": "query",
    "required": False,
    "description": "the name a raw-body image's answer gives as its path (default '-')",
    "schema": {"type": "string"},
}
_MODEL_PARAM = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the model's name: its run folder's name (GET /models lists them)",
    "schema": {"type": "string"},
}
_REFUSALS = {str(code): _ERROR for code in (400, 401, 404, 408, 413, 415, 422)}


def _predict(model_param: bool) -> dict[str, Any]:
    parameters = [
        {
            "name": "top_k",
            "in": "query",
            "required": False,
            "description": "how many classes each answer lists (default 1)",
            "schema": {"type": "integer", "minimum": 1},
        },
        {
            "name": "unknown_threshold",
            "in": "query",
            "required": False,
            "description": "typicality below which an image is flagged unknown (default: the "
            "run's), as `predict --unknown-threshold`",
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
        },
        _NAME_PARAM,
    ]
    return {
        "post": {
            "summary": "Predict images: the JSON of `headstart predict --json`, one per image",
            "parameters": [_MODEL_PARAM, *parameters] if model_param else parameters,
            "requestBody": _IMAGES_BODY,
            "responses": {
                "200": {
                    "description": "one prediction per image, in the order sent",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Prediction"},
                            }
                        }
                    },
                },
                **_REFUSALS,
            },
        }
    }


def _explain(model_param: bool) -> dict[str, Any]:
    parameters = [
        {
            "name": "class",
            "in": "query",
            "required": False,
            "description": "the class to map (default: the predicted one)",
            "schema": {"type": "string"},
        },
        _NAME_PARAM,
    ]
    return {
        "post": {
            "summary": "The class-activation map (Grad-CAM) of one image, over the image",
            "parameters": [_MODEL_PARAM, *parameters] if model_param else parameters,
            "requestBody": _IMAGES_BODY,
            "responses": {
                "200": {
                    "description": "a PNG of the image as the network sees it, the map over it",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                },
                **_REFUSALS,
            },
        }
    }


def _info(model_param: bool) -> dict[str, Any]:
    return {
        "get": {
            "summary": "The run's config: what `headstart info RUN --json` prints",
            "parameters": [_MODEL_PARAM] if model_param else [],
            "responses": {
                "200": {
                    "description": "the run's headstart config",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": _ERROR,
                "404": _ERROR,
            },
        }
    }


def _get(summary: str, content_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": summary, "content": {content_type: {"schema": schema}}}
            },
        }
    }


def openapi_schema(models: list[str]) -> dict[str, Any]:
    """The API's OpenAPI document; ``models`` are the names the server has."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "headstart serve",
            "version": __version__,
            "description": "Image classification by the trained runs "
            + ", ".join(repr(m) for m in models)
            + " (the first also at /predict, /info, /explain).",
        },
        "paths": {
            "/": _get(
                "The web page: drop images, see the answers", "text/html", {"type": "string"}
            ),
            "/assets/{asset}": {
                "get": {
                    "summary": "The page's stylesheet and script",
                    "parameters": [
                        {
                            "name": "asset",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["page.css", "page.js"]},
                        }
                    ],
                    "responses": {"200": {"description": "the file"}, "404": _ERROR},
                }
            },
            "/health": _get(
                "Whether the server is up, and its models",
                "application/json",
                {"$ref": "#/components/schemas/Health"},
            ),
            "/openapi.json": _get("This document", "application/json", {"type": "object"}),
            "/models": _get(
                "The models served, with their classes",
                "application/json",
                {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Model"},
                },
            ),
            "/info": _info(False),
            "/predict": _predict(False),
            "/explain": _explain(False),
            "/models/{name}/info": _info(True),
            "/models/{name}/predict": _predict(True),
            "/models/{name}/explain": _explain(True),
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "files": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "path": {"type": "string"},
                                    "error": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Prediction": {
                    "type": "object",
                    "description": "as `headstart predict --json` gives it for a file",
                    "required": ["path", "label", "probability", "top_k"],
                    "properties": {
                        "path": {"type": "string"},
                        "label": {"type": "string"},
                        "probability": {"type": "number"},
                        "typicality": {
                            "type": "number",
                            "description": "share of held-out known images less typical than "
                            "this one (runs with a typicality score only)",
                        },
                        "unknown": {
                            "type": "boolean",
                            "description": "typicality below the run's threshold",
                        },
                        "top_k": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "label": {"type": "string"},
                                    "probability": {"type": "number"},
                                },
                            },
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string"},
                        "models": {"type": "array", "items": {"type": "string"}},
                        "token_required": {"type": "boolean"},
                    },
                },
                "Model": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "classes": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }
