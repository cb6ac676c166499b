"""Check recorded HTTP exchanges against the forges' own API descriptions.

The loopback fakes record every request a client sends and every response they serve.
:class:`ApiSpec` checks both against the reference description of the real API:

- request: the method and path match an operation (path templates, literal text winning
  over parameters; ``{filepath}`` and GitHub's ``x-multi-segment`` parameters span several
  segments), path parameters have the declared type, every query parameter is declared for
  that operation with a valid value (type, enum, date-time), required query and header
  parameters are present, credentials are not in the query string, and the headers our
  clients promise (auth scheme, Accept, API version) are there. GitHub's ``Accept`` may also
  be one of the custom media types the operation's description lists (``application/vnd.
  github.diff`` for pulls/get, ``...raw+json`` for repos/get-content);
- request body: a JSON body (sent as ``application/json``) validates against the operation's
  ``requestBody`` (OpenAPI 3) or ``in: body`` parameter (Swagger 2), and every field in it,
  nested objects and array items included, is one the schema declares: a misspelt field
  (``new_postion``) that a forge would silently ignore is caught;
- response: the status is documented for the operation (undocumented 4xx/5xx pass: both
  descriptions leave most error statuses out), and a JSON body validates against the
  documented schema, with ``$ref`` resolved inside the description. A body that is not JSON
  (a diff, a raw file) must have a media type the operation produces (Swagger ``produces``)
  or the custom media type the request asked for (GitHub).

Nullability: Gitea's Swagger 2.0 is generated from Go structs and cannot say which fields
are pointers, so ``null`` is accepted for any object property there (real Gitea sends
``"milestone": null`` etc.). GitHub's OpenAPI 3.0 marks ``nullable: true`` explicitly; it
is translated to JSON Schema.

GitHub addendum: the subset in ``reference/github`` lacks ``GET /repos/{owner}/{repo}/issues/
comments`` (GitHub operation ``issues/list-comments-for-repo``, documented at
docs.github.com/rest/issues/comments#list-issue-comments-for-a-repository). It is added here
with GitHub's documented parameters (sort, direction, since, per_page, page); its response is
the same ``issue-comment`` array as ``issues/list-comments``, whose schema the subset has.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.support.reference import reference_path

SPEC_URI = "urn:auto-review:api-spec"
CREDENTIAL_QUERY_PARAMS = frozenset({"token", "access_token", "sudo", "private_token"})


class Exchange(Protocol):
    """What the fakes record for one request/response pair (read-only here)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, list[str]]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def status(self) -> int: ...
    @property
    def response_json(self) -> Any: ...
    # raw responses (diff, file): their media type; "" = a JSON response
    @property
    def response_content_type(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    template: str
    definition: dict[str, Any]
    pointer: str  # JSON pointer of the operation inside the (augmented) description

    @property
    def literal_segments(self) -> int:
        return sum(1 for s in self.template.split("/") if s and not s.startswith("{"))

    @property
    def literal_characters(self) -> int:
        return len(re.sub(r"\{[^}]+\}", "", self.template))

    def multi_segment_parameters(self) -> set[str]:
        """Path parameters that may contain '/': GitHub marks them ``x-multi-segment``;
        Gitea's ``filepath`` (a ``*`` route) is one by its documented meaning."""
        names = set()
        for param in self.definition.get("parameters", []):
            if param.get("in") == "path" and (
                param.get("x-multi-segment") or param.get("name") == "filepath"
            ):
                names.add(param["name"])
        return names

    def custom_media_types(self) -> set[str]:
        """Media types the operation's description lists as custom (GitHub: "This endpoint
        supports the following custom media types", each as a bold code span)."""
        return set(
            re.findall(r"\*\*`(application/[^`]+)`\*\*", self.definition.get("description", ""))
        )


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _allow_null_properties(node: Any) -> None:
    """Swagger 2.0 from Go: any property may be null (nil pointer, nil slice or map)."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, schema in list(properties.items()):
                _allow_null_properties(schema)
                properties[name] = {"anyOf": [schema, {"type": "null"}]}
        for key, value in node.items():
            if key != "properties":
                _allow_null_properties(value)
    elif isinstance(node, list):
        for item in node:
            _allow_null_properties(item)


def _translate_nullable(node: Any) -> None:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema that admits null."""
    if isinstance(node, dict):
        for value in node.values():
            _translate_nullable(value)
        if node.pop("nullable", False) is True:
            inner = dict(node)
            node.clear()
            node["anyOf"] = [inner, {"type": "null"}]
    elif isinstance(node, list):
        for item in node:
            _translate_nullable(item)


@dataclass
class ApiSpec:
    document: dict[str, Any]
    base_path: str = ""
    # header name (lower case) -> pattern its value must fully match, on every request
    required_headers: dict[str, str] = field(default_factory=dict)
    # a header that may instead name one of the operation's custom media types (GitHub Accept)
    media_type_header: str | None = None
    # operationId -> pattern of an Authorization header it accepts instead (Gitea's token
    # creation takes the account's password, as basic auth)
    authorization_overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.swagger2 = self.document.get("swagger") == "2.0"
        schema_doc = copy.deepcopy(self.document)
        if self.swagger2:
            _allow_null_properties(schema_doc.get("definitions", {}))
            _allow_null_properties(schema_doc.get("responses", {}))
            _allow_null_properties(schema_doc.get("paths", {}))
        else:
            _translate_nullable(schema_doc.get("paths", {}))
        resource = Resource.from_contents(schema_doc, default_specification=DRAFT4)
        self._registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self._operations: list[Operation] = []
        for template, item in self.document.get("paths", {}).items():
            for method, definition in item.items():
                if method in ("get", "post", "put", "patch", "delete", "head", "options"):
                    pointer = f"/paths/{_escape_pointer(template)}/{method}"
                    self._operations.append(
                        Operation(method.upper(), template, definition, pointer)
                    )

    # -- factories for the two reference descriptions ------------------------------------

    @classmethod
    def gitea(cls) -> ApiSpec:
        document = json.loads(reference_path("forge", "gitea-swagger-v1.json").read_text())
        return cls(
            document,
            base_path=document.get("basePath", ""),
            required_headers={"authorization": r"token \S+"},
            authorization_overrides={"userCreateToken": r"Basic \S+"},
        )

    @classmethod
    def github(cls) -> ApiSpec:
        document = json.loads(reference_path("github", "rest-openapi-subset.json").read_text())
        _add_github_repo_comments(document)
        return cls(
            document,
            required_headers={
                "authorization": r"Bearer \S+",
                "accept": r"application/vnd\.github\+json",
                "x-github-api-version": r"\d{4}-\d{2}-\d{2}",
                "user-agent": r".+",
            },
            media_type_header="accept",
        )

    # -- matching -------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request path (without the base path), most literal first."""
        candidates = []
        for operation in self._operations:
            if operation.method != method.upper():
                continue
            multi = operation.multi_segment_parameters()

            def group(found: re.Match[str], multi: set[str] = multi) -> str:
                name = found[1]
                return f"(?P<{name}>.+)" if name in multi else f"(?P<{name}>[^/]+)"

            pattern = re.sub(r"\\\{([^}]+)\\\}", group, re.escape(operation.template))
            found = re.fullmatch(pattern, path)
            if found:
                candidates.append((operation, found.groupdict()))
        if not candidates:
            return None
        return max(candidates, key=lambda c: (c[0].literal_segments, c[0].literal_characters))

    def _parameters(self, operation: Operation, where: str) -> list[dict[str, Any]]:
        params = operation.definition.get("parameters", [])
        return [p for p in params if p.get("in") == where]

    # -- request checks ---------------------------------------------------------------------

    def request_problems(self, exchange: Exchange) -> list[str]:
        label = f"{exchange.method} {exchange.path}"
        path = exchange.path
        if self.base_path:
            if not path.startswith(self.base_path + "/"):
                return [f"{label}: path is outside the API base path {self.base_path}"]
            path = path[len(self.base_path) :]
        matched = self.match(exchange.method, path)
        if matched is None:
            return [f"{label}: no such operation in the API description"]
        operation, path_values = matched
        label = f"{exchange.method} {operation.template}"
        problems: list[str] = []
        for param in self._parameters(operation, "path"):
            value = path_values.get(param["name"], "")
            problems += _value_problems(label, f"path parameter {param['name']}", param, value)
        declared = {p["name"]: p for p in self._parameters(operation, "query")}
        for name, values in exchange.query.items():
            if name in CREDENTIAL_QUERY_PARAMS:
                problems.append(f"{label}: credential in query parameter {name!r}")
                continue
            if name not in declared:
                problems.append(f"{label}: undeclared query parameter {name!r}")
                continue
            if len(values) != 1:
                problems.append(f"{label}: query parameter {name!r} repeated")
            for value in values:
                problems += _value_problems(label, f"query {name}", declared[name], value)
        for name, param in declared.items():
            if param.get("required") and name not in exchange.query:
                problems.append(f"{label}: required query parameter {name!r} missing")
        headers = {k.lower(): v for k, v in exchange.headers.items()}
        for param in self._parameters(operation, "header"):
            if param.get("required") and param["name"].lower() not in headers:
                problems.append(f"{label}: required header {param['name']!r} missing")
        for name, pattern in self.required_headers.items():
            sent = headers.get(name)
            if sent is None:
                problems.append(f"{label}: header {name!r} missing")
            elif self._header_exempt(name, operation, sent):
                continue
            elif not re.fullmatch(pattern, sent):
                problems.append(f"{label}: header {name!r} has the wrong form")
        problems += self._request_body_problems(label, operation, exchange)
        return problems

    def _header_exempt(self, name: str, operation: Operation, sent: str) -> bool:
        """A custom media type the operation names, or its own form of Authorization."""
        if name == self.media_type_header and sent in operation.custom_media_types():
            return True
        if name != "authorization":
            return False
        pattern = self.authorization_overrides.get(operation.definition.get("operationId", ""))
        return pattern is not None and re.fullmatch(pattern, sent) is not None

    def _request_body_problems(
        self, label: str, operation: Operation, exchange: Exchange
    ) -> list[str]:
        body_spec = operation.definition.get("requestBody")
        if body_spec is None:
            for param in self._parameters(operation, "body"):
                body_spec = {"required": param.get("required", False), "_schema": param["schema"]}
        if body_spec is None:
            return [f"{label}: unexpected request body"] if exchange.body else []
        if not exchange.body:
            return [f"{label}: request body required"] if body_spec.get("required") else []
        problems = []
        content_type = {k.lower(): v for k, v in exchange.headers.items()}.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/json":
            problems.append(f"{label}: request body is not sent as application/json")
        try:
            payload = json.loads(exchange.body)
        except ValueError:
            return [*problems, f"{label}: request body is not JSON"]
        if "_schema" in body_spec:
            schema = body_spec["_schema"]
            pointer = ""  # swagger body schemas are validated inline (refs resolve in the doc)
            problems += self._schema_problems(label, schema, payload, pointer)
        else:
            schema = body_spec.get("content", {}).get("application/json", {}).get("schema")
            if schema is None:
                return [*problems, f"{label}: operation takes no JSON body"]
            pointer = f"{operation.pointer}/requestBody/content/application~1json/schema"
            problems += self._schema_problems(label, None, payload, pointer)
        for where in self._undeclared_fields(schema, payload, ""):
            problems.append(f"{label}: body field {where} is not in the API description")
        return problems

    def _undeclared_fields(self, schema: Any, value: Any, where: str) -> list[str]:
        """Paths of object members the schema does not declare (no additionalProperties)."""
        schema = self._deref(schema)
        if not isinstance(schema, dict):
            return []
        found: list[str] = []
        alternatives = [
            self._deref(s) for key in ("allOf", "anyOf", "oneOf") for s in schema.get(key, [])
        ]
        if isinstance(value, dict):
            declared: dict[str, Any] = {}
            open_ended = schema.get("additionalProperties") not in (None, False)
            for part in (schema, *alternatives):
                if isinstance(part, dict):
                    declared.update(part.get("properties", {}))
                    open_ended |= part.get("additionalProperties") not in (None, False)
            if not declared and not open_ended and schema.get("type") != "object":
                return []
            for key, member in value.items():
                if key in declared:
                    found += self._undeclared_fields(declared[key], member, f"{where}/{key}")
                elif not open_ended:
                    found.append(f"{where}/{key}")
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                found += self._undeclared_fields(schema["items"], item, f"{where}/{index}")
        return found

    def _deref(self, schema: Any) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self._resolve_local(schema["$ref"])
        return schema

    # -- response checks --------------------------------------------------------------------

    def response_problems(self, exchange: Exchange) -> list[str]:
        path = exchange.path
        if self.base_path and path.startswith(self.base_path + "/"):
            path = path[len(self.base_path) :]
        matched = self.match(exchange.method, path)
        if matched is None:
            return []  # reported by request_problems
        operation = matched[0]
        label = f"{exchange.method} {operation.template} -> {exchange.status}"
        responses = operation.definition.get("responses", {})
        key = str(exchange.status) if str(exchange.status) in responses else "default"
        if key not in responses:
            if 200 <= exchange.status < 300:
                return [f"{label}: success status not documented"]
            return []
        response = responses[key]
        raw_type = getattr(exchange, "response_content_type", "").split(";")[0].strip()
        if raw_type and raw_type != "application/json":
            return self._raw_response_problems(label, operation, exchange, raw_type)
        pointer = f"{operation.pointer}/responses/{key}"
        if "$ref" in response:  # swagger: '#/responses/Name'
            pointer = response["$ref"].removeprefix("#")
            response = self._resolve_local(response["$ref"])
        if self.swagger2:
            if "schema" not in response:
                return []
            pointer += "/schema"
        else:
            content = response.get("content", {})
            if "application/json" not in content or "schema" not in content["application/json"]:
                return []
            pointer += "/content/application~1json/schema"
        if exchange.response_json is None and exchange.status in (204, 304):
            return []
        return self._schema_problems(label, None, exchange.response_json, pointer)

    def _raw_response_problems(
        self, label: str, operation: Operation, exchange: Exchange, media_type: str
    ) -> list[str]:
        """A non-JSON body: allowed when the operation produces that media type (Swagger) or
        the request asked for one of its custom media types and got that kind of body."""
        if self.swagger2:
            produces = operation.definition.get("produces", self.document.get("produces", []))
            if media_type in produces:
                return []
            return [f"{label}: response media type {media_type} is not one the operation produces"]
        headers = {k.lower(): v for k, v in exchange.headers.items()}
        asked = headers.get(self.media_type_header or "accept", "")
        if asked in operation.custom_media_types() and (
            media_type == asked or asked.removesuffix("+json") == media_type
        ):
            return []
        return [f"{label}: non-JSON response ({media_type}) to a request for {asked or 'JSON'}"]

    def _resolve_local(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for token in ref.removeprefix("#/").split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict)
        return node

    def _schema_problems(
        self, label: str, inline: dict[str, Any] | None, instance: Any, pointer: str
    ) -> list[str]:
        schema = inline if inline is not None else {"$ref": f"{SPEC_URI}#{pointer}"}
        if inline is not None and "$ref" in inline:
            schema = {"$ref": SPEC_URI + inline["$ref"]}
        validator = Draft4Validator(schema, registry=self._registry)
        problems = []
        for error in validator.iter_errors(instance):
            # Descend into anyOf (every nullable property is one) to the specific failure.
            specific = best_match([error])
            message = specific.message
            if len(message) > 160:
                message = message[:160] + "..."
            where = "/".join(map(str, specific.absolute_path))
            problems.append(f"{label}: body at /{where}: {message}")
        return problems

    # -- both -------------------------------------------------------------------------------

    def problems(self, exchanges: Iterable[Exchange]) -> list[str]:
        found: list[str] = []
        for exchange in exchanges:
            found += self.request_problems(exchange)
            found += self.response_problems(exchange)
        return found

    def assert_conforms(self, exchanges: Iterable[Exchange]) -> None:
        """Fail with every problem found; an empty exchange list is itself a failure."""
        exchanges = list(exchanges)
        assert exchanges, "no HTTP exchanges were recorded"
        found = self.problems(exchanges)
        assert not found, "API description mismatch:\n" + "\n".join(found)


def _value_problems(label: str, what: str, param: dict[str, Any], value: str) -> list[str]:
    schema = param.get("schema", param)  # OpenAPI 3 nests, Swagger 2 inlines
    kind = schema.get("type")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return [f"{label}: {what} is not an integer"]
    elif kind == "boolean":
        if value not in ("true", "false"):
            return [f"{label}: {what} is not a boolean"]
    elif kind == "string" and schema.get("format") == "date-time":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return [f"{label}: {what} is not an RFC 3339 date-time"]
        if parsed.tzinfo is None:
            return [f"{label}: {what} has no time zone"]
    enum = schema.get("enum")
    if enum is not None and value not in [str(e) for e in enum]:
        return [f"{label}: {what} is not one of {enum}"]
    return []


def _add_github_repo_comments(document: dict[str, Any]) -> None:
    """Add ``issues/list-comments-for-repo`` (see the module docstring for its source)."""
    per_issue = document["paths"]["/repos/{owner}/{repo}/issues/{issue_number}/comments"]["get"]
    by_name = {p["name"]: p for p in per_issue["parameters"]}
    document["paths"].setdefault("/repos/{owner}/{repo}/issues/comments", {})["get"] = {
        "operationId": "issues/list-comments-for-repo",
        "summary": "List issue comments for a repository",
        "parameters": [
            by_name["owner"],
            by_name["repo"],
            {
                "name": "sort",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["created", "updated"], "default": "created"},
            },
            {
                "name": "direction",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["asc", "desc"]},
            },
            by_name["since"],
            by_name["per_page"],
            by_name["page"],
        ],
        "responses": {
            "200": copy.deepcopy(per_issue["responses"]["200"]),
            "404": copy.deepcopy(per_issue["responses"]["404"]),
        },
    }
