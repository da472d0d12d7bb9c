"""Request bodies: read within the size and time limits, decoded from JSON or YAML, and checked against
the object's Go shape as kube-apiserver decodes it (kind, apiVersion, field types, unknown fields).

Used by the API server's writes (`hacluster.apiserver.writes`), its storage-fault handler and the reviews.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from hacluster.apiserver import bodies
from hacluster.config import ApiConfig
from hacluster.model import errors as E
from hacluster.model import resources, schema
from hacluster.model.resources import Resource

Obj = dict[str, Any]


class BodyDecoder:
    """Reads and decodes request bodies within the limits of the API config."""

    def __init__(self, api_cfg: ApiConfig) -> None:
        self.api_cfg = api_cfg

    async def read_body(self, request: web.Request, *, allow_empty: bool = False) -> Any:
        limit = self.api_cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise E.TooLarge(f"Request entity too large: limit is {limit}")
        # StreamReader.read(n) returns what has arrived so far, not n bytes: a body that comes in several TCP
        # segments or TLS records (kubectl's PUT of a whole pod) must be read until EOF.
        chunks: list[bytes] = []
        size = 0
        body_timeout_s = self.api_cfg.body_timeout_s
        try:
            async with asyncio.timeout(body_timeout_s):
                while True:
                    chunk = await request.content.read(limit + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        raise E.TooLarge(f"Request entity too large: limit is {limit}")
        except TimeoutError:
            raise E.RequestTimeout(f"the request body did not arrive within {body_timeout_s:g} s") from None
        raw = b"".join(chunks)
        if not raw.strip():
            if allow_empty:
                return None
            raise E.BadRequest("the body of the request was in an unknown format - accepted media types include: "
                               "application/json, application/yaml")
        ctype = (request.content_type or "").lower()
        if "protobuf" in ctype or "cbor" in ctype:
            # A media type hacluster does not decode: 415, as Kubernetes answers one it does not serve (kubectl
            # 1.32 does not fall back to JSON; the reviews read its protobuf themselves, see reviews.py).
            raise E.UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media types '
                                         f'include: application/json, application/yaml (got "{ctype}")')
        if "yaml" in ctype:
            return bodies.decode_yaml(raw)
        return bodies.decode_json(raw)

    def decode_object(self, request: web.Request, res: Resource, body: Any) -> tuple[Obj, list[str]]:
        """Check kind/apiVersion and field types; return the object and the unknown-field warnings."""
        if not isinstance(body, dict):
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: json: "
                               f"cannot unmarshal {json_type(body)} into Go value of type {res.group or 'core'}."
                               f"{res.kind}")
        kind = body.get("kind")
        if kind not in (None, "", res.kind):
            if not isinstance(kind, str) or kind not in {r.kind for r in resources.ALL} | {"Binding"}:
                raise E.BadRequest(f'no kind "{kind}" is registered for version "{res.api_version}" in scheme '
                                   '"pkg/api/legacyscheme/scheme.go:30"')
            raise E.BadRequest(f"the object provided is unrecognized (must be of type {res.kind}): couldn't get "
                               f"version/kind; object kind {kind} does not match {res.kind}")
        av = body.get("apiVersion")
        if av not in (None, "", res.api_version):
            raise E.BadRequest(f"the API version in the data ({av}) does not match the expected API version "
                               f"({res.api_version})")
        mismatches, unknown = schema.check_shape(body, res.shape)
        if mismatches:
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                               f"{mismatches[0].message()}")
        strict = request.query.get("fieldValidation", "") == "Strict"
        if unknown and strict:
            detail = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise E.BadRequest(f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                               f"strict decoding error: {detail}")
        # Decoding into Go structs always drops unknown fields; `Ignore` only silences the warnings.
        ignore = request.query.get("fieldValidation", "") == "Ignore"
        warnings = [] if ignore else [f'unknown field "{u}"' for u in unknown]
        return schema.decoded(body, res.shape), warnings


def decode_small(body: Any, shape: schema.Struct) -> Obj:
    """A request object that is not stored (Scale, Eviction, DeleteOptions), typed as Go decodes it."""
    if not isinstance(body, dict):
        raise E.BadRequest(f"{shape.go_name} in version \"v1\" cannot be handled as a {shape.go_name}: json: "
                           f"cannot unmarshal {json_type(body)} into Go value of type {shape.go_name}")
    mismatches, _ = schema.check_shape(body, shape)
    if mismatches:
        raise E.BadRequest(f"{shape.go_name} in version \"v1\" cannot be handled as a {shape.go_name}: "
                           f"{mismatches[0].message()}")
    decoded: Obj = schema.decoded(body, shape)
    return decoded


def json_type(v: Any) -> str:
    """The JSON type of a decoded value, as Go's unmarshal error names it."""
    return {str: "string", int: "number", float: "number", bool: "bool", list: "array",
            type(None): "null"}.get(type(v), "value")
