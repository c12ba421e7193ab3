"""The OpenAPI document says, per operation, which media types it produces and accepts.

flask-smorest documents one content type (JSON) per body; this apispec plugin adds the
other representations every view serves through ``app.negotiation``: XML and HTML for
every success response (and CSV where the view says ``@blp.doc(**negotiation.CSV_DOC)``),
``application/problem+json``/``+xml`` for errors, and forms and XML for JSON bodies.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec, BasePlugin

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
TEXT = {"type": "string"}
BODY_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/xml")


def _is_error(status: Any) -> bool:
    return str(status) == "default" or str(status)[:1] in ("4", "5")


def _problem_content(schema: Any) -> dict[str, Any]:
    return {
        "application/problem+json": {"schema": schema},
        "application/problem+xml": {"schema": schema},
    }


class MediaTypesPlugin(BasePlugin):
    """Adds the negotiated media types to every operation of the spec."""

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec

    def _fix_shared_responses(self) -> None:
        # flask-smorest's shared 422/default responses: our errors are RFC 9457 problems.
        if "Problem" not in self.spec.components.schemas:
            return
        for response in self.spec.components.responses.values():
            if "application/json" in response.get("content", {}):
                response["content"] = _problem_content(PROBLEM_REF)

    def _responses(self, operation: dict[str, Any], csv: bool) -> None:
        for status, response in operation.get("responses", {}).items():
            content = response.get("content") if isinstance(response, dict) else None
            if not content or "application/json" not in content:
                continue
            schema = content["application/json"].get("schema")
            if _is_error(status):
                response["content"] = _problem_content(schema)
                continue
            content["application/xml"] = {"schema": schema}
            content["text/html"] = {"schema": TEXT}
            if csv:
                content["text/csv"] = {"schema": TEXT}

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        self._fix_shared_responses()
        for operation in (operations or {}).values():
            csv = bool(operation.pop("x-csv", False))
            self._responses(operation, csv)
            body = operation.get("requestBody") or {}
            content = body.get("content") or {}
            # Only bodies parsed by negotiation.parse_body (documented as JSON alone).
            if list(content) == ["application/json"]:
                for media_type in BODY_MEDIA_TYPES:
                    content[media_type] = {"schema": content["application/json"].get("schema")}
