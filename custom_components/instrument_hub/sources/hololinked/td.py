"""The W3C Thing Description of a hololinked Thing: a lenient parser into what a client needs.

Pure code without I/O. hololinked 0.4.2's TD deviates from the standard in ways a strict parser
rejects (``context`` for ``@context``; empty descriptions; event labels never emitted; JSON schemas
from pydantic with ``oneOf [{type}, {type: null}]`` for optional values and ``$ref``/``$defs`` for
nested models), so only what a client uses is read and the rest is tolerated. Every href is
resolved and moved onto the authority the user configured: the server writes its own host name
(``socket.gethostname()``) into the forms unless asked for another authority.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit, urlunsplit

TD_PATH: Final = "resources/wot-td"
"""The TD's path below the Thing's base URL (``http://host:port/<thing-id>``)."""
HTTP_SCHEMES: Final = frozenset({"http", "https"})
_MAX_REF_DEPTH: Final = 8

# What a form does (its ``op``) and the HTTP method it defaults to when the form names none.
OP_READ: Final = "readproperty"
OP_WRITE: Final = "writeproperty"
OP_OBSERVE: Final = "observeproperty"
OP_INVOKE: Final = "invokeaction"
OP_SUBSCRIBE: Final = "subscribeevent"
_DEFAULT_METHODS: Final = {
    OP_READ: "GET",
    OP_WRITE: "PUT",
    OP_OBSERVE: "GET",
    OP_INVOKE: "POST",
    OP_SUBSCRIBE: "GET",
}


class NotAThingDescription(ValueError):
    """The document is not a Thing Description (an HTML page, another JSON document, ...)."""


@dataclass(frozen=True, slots=True)
class Form:
    """How to perform one operation: the (rewritten) URL and the HTTP method."""

    href: str
    method: str


@dataclass(frozen=True, slots=True)
class DataSchema:
    """A JSON schema reduced to what maps onto entities.

    ``type`` is the one JSON type the value has (``number``, ``integer``, ``boolean``, ``string``,
    ``object``, ``array``, ``null``) or None when the schema allows several or says nothing;
    ``nullable`` when ``null`` is allowed besides it (``NaN`` arrives as ``null``).
    """

    type: str | None = None
    nullable: bool = False
    title: str | None = None
    description: str | None = None
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: float | None = None
    enum: tuple[str, ...] = ()
    format: str | None = None
    properties: Mapping[str, DataSchema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class PropertyAffordance:
    """A property: its schema and its forms (``write`` None: read-only; ``observe``: SSE stream)."""

    name: str
    schema: DataSchema
    read: Form | None
    write: Form | None
    observe: Form | None


@dataclass(frozen=True, slots=True)
class ActionAffordance:
    """An action: its input and output schemas and the form that invokes it."""

    name: str
    title: str | None
    description: str | None
    input: DataSchema | None
    output: DataSchema | None
    invoke: Form


@dataclass(frozen=True, slots=True)
class EventAffordance:
    """An event: the schema of its payload and the SSE form that subscribes to it."""

    name: str
    title: str | None
    data: DataSchema | None
    subscribe: Form


@dataclass(frozen=True, slots=True)
class ThingDescription:
    """What a client needs from a TD; affordances without a usable HTTP form are in ``skipped``."""

    id: str
    title: str
    description: str | None
    properties: Mapping[str, PropertyAffordance]
    actions: Mapping[str, ActionAffordance]
    events: Mapping[str, EventAffordance]
    security: tuple[str, ...] = ()
    """The schemes in force, as ``securityDefinitions`` names them (``basic``, ``apikey``, ``nosec``)."""
    skipped: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------
# URLs


@dataclass(frozen=True, slots=True)
class ThingUrl:
    """A Thing's base URL, normalised: ``scheme://host:port/<path>`` without query or trailing ``/``."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """Return ``host:port`` (the host lower-cased; IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """Return ``scheme://host:port``: what the server is asked to put into the TD's hrefs."""
        return f"{self.scheme}://{self.authority}"

    @property
    def base(self) -> str:
        """Return the Thing's base URL."""
        return f"{self.origin}{self.path}"

    @property
    def thing_path(self) -> str:
        """Return the last segment of the path (hololinked: the Thing's id)."""
        return self.path.rsplit("/", 1)[-1]

    def td_url(self) -> str:
        """Return the URL of the Thing Description."""
        return f"{self.base}/{TD_PATH}"

    def server_url(self, path: str) -> str:
        """Return a URL at the server's root (``/liveness``)."""
        return f"{self.origin}/{path.lstrip('/')}"


def parse_thing_url(text: str) -> ThingUrl:
    """Normalise what a user typed as the Thing's URL; ValueError when it cannot be one.

    A pasted TD URL (``.../resources/wot-td?ignore_errors=true``) is taken back to the Thing's base;
    the path must name the Thing (``http://host:port`` alone is not a Thing's URL).
    """
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise ValueError("the URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise ValueError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("give credentials in their own fields, not in the URL")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError("the URL's port is not a port") from err
    path = parts.path.rstrip("/").removesuffix("/" + TD_PATH).rstrip("/")
    if not path:
        raise ValueError("the URL must name the Thing: http://host:port/<thing-id>")
    return ThingUrl(
        scheme, host.lower(), port or (443 if scheme == "https" else 80), path
    )


def rewrite_href(href: str, url: ThingUrl) -> str | None:
    """Return a form's href resolved against the Thing's base and moved onto its authority.

    None for a form of another protocol (``mqtt://``, ``tcp://``: a hololinked Thing may also serve
    ZMQ or MQTT).
    """
    absolute = urlsplit(urljoin(url.base + "/", href))
    if absolute.scheme.lower() not in HTTP_SCHEMES:
        return None
    return urlunsplit(
        (url.scheme, url.authority, absolute.path, absolute.query, absolute.fragment)
    )


# --------------------------------------------------------------------------------------------------
# Parsing


def parse_td(document: object, url: ThingUrl) -> ThingDescription:
    """Read a TD (already JSON-decoded); NotAThingDescription when it is not one."""
    if not isinstance(document, dict):
        raise NotAThingDescription("the document is not a JSON object")
    thing_id = document.get("id")
    title = document.get("title")
    sections = [document.get(key) for key in ("properties", "actions", "events")]
    if (
        not isinstance(thing_id, str)
        or not thing_id
        or not isinstance(title, str)
        or not any(isinstance(section, dict) for section in sections)
    ):
        raise NotAThingDescription(
            "no id, title and properties/actions/events: not a Thing Description"
        )
    skipped: list[str] = []
    properties = _affordances(
        document, "properties", "property", _property, url, skipped
    )
    actions = _affordances(document, "actions", "action", _action, url, skipped)
    events = _affordances(document, "events", "event", _event, url, skipped)
    return ThingDescription(
        id=thing_id,
        title=title.strip() or thing_id,
        description=_text(document.get("description")),
        properties=properties,
        actions=actions,
        events=events,
        security=_security(document),
        skipped=tuple(skipped),
    )


def _affordances[T](
    document: Mapping[str, Any],
    key: str,
    kind: str,
    parse: Callable[[str, Mapping[str, Any], ThingUrl], T | None],
    url: ThingUrl,
    skipped: list[str],
) -> dict[str, T]:
    """Parse one section (``properties``, ``actions``, ``events``); "<kind> <name>" of each skipped."""
    parsed: dict[str, T] = {}
    for name, raw in _section(document, key):
        affordance = parse(name, raw, url)
        if affordance is None:
            skipped.append(f"{kind} {name}")
        else:
            parsed[name] = affordance
    return parsed


def _section(
    document: Mapping[str, Any], key: str
) -> list[tuple[str, Mapping[str, Any]]]:
    section = document.get(key)
    if not isinstance(section, dict):
        return []
    return [
        (name, raw)
        for name, raw in section.items()
        if isinstance(name, str) and isinstance(raw, dict)
    ]


def _text(value: object) -> str | None:
    """Return a non-empty string (hololinked blanks single-sentence descriptions), else None."""
    return value.strip() or None if isinstance(value, str) else None


def _forms(raw: Mapping[str, Any], url: ThingUrl) -> dict[str, Form]:
    """Return the first usable HTTP form of each operation of an affordance."""
    found: dict[str, Form] = {}
    forms = raw.get("forms")
    if not isinstance(forms, list):
        return found
    for form in forms:
        if not isinstance(form, dict) or not isinstance(form.get("href"), str):
            continue
        href = rewrite_href(form["href"], url)
        if href is None:
            continue
        ops = form.get("op")
        op_list = (
            [ops] if isinstance(ops, str) else ops if isinstance(ops, list) else []
        )
        for op in op_list:
            if not isinstance(op, str) or op in found or op not in _DEFAULT_METHODS:
                continue
            if op in (OP_OBSERVE, OP_SUBSCRIBE) and form.get("subprotocol") not in (
                None,
                "sse",
            ):
                continue  # long polling or websockets: not spoken here
            method = form.get("htv:methodName")
            found[op] = Form(
                href,
                method.upper() if isinstance(method, str) else _DEFAULT_METHODS[op],
            )
    return found


def _property(
    name: str, raw: Mapping[str, Any], url: ThingUrl
) -> PropertyAffordance | None:
    forms = _forms(raw, url)
    read = forms.get(OP_READ)
    observe = forms.get(OP_OBSERVE) if raw.get("observable") is True else None
    if read is None and observe is None:
        return None
    schema = parse_schema(raw)
    read_only = raw.get("readOnly") is True
    return PropertyAffordance(
        name=name,
        schema=schema,
        read=read,
        write=None if read_only else forms.get(OP_WRITE),
        observe=observe,
    )


def _action(
    name: str, raw: Mapping[str, Any], url: ThingUrl
) -> ActionAffordance | None:
    invoke = _forms(raw, url).get(OP_INVOKE)
    if invoke is None:
        return None
    return ActionAffordance(
        name=name,
        title=_text(raw.get("title")),
        description=_text(raw.get("description")),
        input=_optional_schema(raw.get("input")),
        output=_optional_schema(raw.get("output")),
        invoke=invoke,
    )


def _event(name: str, raw: Mapping[str, Any], url: ThingUrl) -> EventAffordance | None:
    subscribe = _forms(raw, url).get(OP_SUBSCRIBE)
    if subscribe is None:
        return None
    return EventAffordance(
        name=name,
        title=_text(raw.get("title")),
        data=_optional_schema(raw.get("data")),
        subscribe=subscribe,
    )


def _optional_schema(raw: object) -> DataSchema | None:
    return parse_schema(raw) if isinstance(raw, dict) and raw else None


def _security(document: Mapping[str, Any]) -> tuple[str, ...]:
    definitions = document.get("securityDefinitions")
    security = document.get("security")
    names = [security] if isinstance(security, str) else security
    if not isinstance(definitions, dict) or not isinstance(names, list):
        return ()
    schemes: list[str] = []
    for name in names:
        definition = definitions.get(name) if isinstance(name, str) else None
        if not isinstance(definition, dict):
            continue
        scheme = definition.get("scheme")
        # hololinked 0.4.2 never fills in the API key scheme's name: an "in" alone is an API key.
        if not isinstance(scheme, str):
            scheme = "apikey" if "in" in definition else None
        if scheme and scheme not in schemes:
            schemes.append(scheme)
    return tuple(schemes)


def parse_schema(
    raw: Mapping[str, Any], root: Mapping[str, Any] | None = None
) -> DataSchema:
    """Reduce a JSON schema (as pydantic and hololinked write them) to a :class:`DataSchema`."""
    return _schema(raw, raw if root is None else root, 0)


def _schema(raw: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> DataSchema:
    raw, nullable = _merge_alternatives(_resolve(raw, root, depth), root, depth)
    kinds, declared_null = _types(raw)
    nullable = nullable or declared_null
    resolved = kinds[0] if len(kinds) == 1 else None
    enum = raw.get("enum")
    values = enum if isinstance(enum, list) else []
    if None in values:
        nullable = True
    options = tuple(item for item in values if isinstance(item, str))
    if (
        options
        and resolved is None
        and all(isinstance(item, str | None) for item in values)
    ):
        resolved = "string"
    properties: dict[str, DataSchema] = {}
    raw_properties = raw.get("properties")
    if isinstance(raw_properties, dict) and depth < _MAX_REF_DEPTH:
        if resolved is None:
            resolved = "object"
        for key, sub in raw_properties.items():
            if isinstance(key, str) and isinstance(sub, dict):
                properties[key] = _schema(sub, root, depth + 1)
    required = raw.get("required")
    return DataSchema(
        type=resolved,
        nullable=nullable,
        title=_text(raw.get("title")),
        description=_text(raw.get("description")),
        unit=_text(raw.get("unit")),
        minimum=_number(raw.get("minimum")),
        maximum=_number(raw.get("maximum")),
        multiple_of=_number(raw.get("multipleOf")),
        enum=options if resolved == "string" else (),
        format=_text(raw.get("format")),
        properties=properties,
        required=tuple(item for item in required if isinstance(item, str))
        if isinstance(required, list)
        else (),
        read_only=raw.get("readOnly") is True,
    )


def _resolve(
    raw: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (and a lone ``allOf`` member) into the schema it names."""
    for _ in range(_MAX_REF_DEPTH - depth):
        all_of = raw.get("allOf")
        if (
            isinstance(all_of, list)
            and len(all_of) == 1
            and isinstance(all_of[0], dict)
        ):
            raw = {**all_of[0], **{k: v for k, v in raw.items() if k != "allOf"}}
            continue
        ref = raw.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return raw
        target: object = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        rest = {k: v for k, v in raw.items() if k != "$ref"}
        if not isinstance(target, dict):
            return rest
        # The referring schema's own keywords (title, unit) win over the definition's.
        raw = {**target, **rest}
    return raw


def _merge_alternatives(
    raw: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> tuple[Mapping[str, Any], bool]:
    """Turn ``oneOf``/``anyOf`` of one type and ``null`` (pydantic's optional) into that type.

    Returns the schema to read and whether ``null`` is allowed; alternatives of several types
    leave the type open (None).
    """
    if "type" in raw or depth >= _MAX_REF_DEPTH:
        return raw, False
    for key in ("oneOf", "anyOf"):
        alternatives = raw.get(key)
        if not isinstance(alternatives, list):
            continue
        resolved = [
            _resolve(alternative, root, depth + 1)
            for alternative in alternatives
            if isinstance(alternative, dict)
        ]
        nullable = any(alternative.get("type") == "null" for alternative in resolved)
        others = [
            alternative for alternative in resolved if alternative.get("type") != "null"
        ]
        rest = {k: v for k, v in raw.items() if k not in ("oneOf", "anyOf")}
        if len(others) == 1:
            # The outer keywords (unit, title, description) win over the alternative's.
            return {**others[0], **rest}, nullable
        if not others and nullable:
            return {**rest, "type": "null"}, False
        return rest, nullable
    return raw, False


def _types(raw: Mapping[str, Any]) -> tuple[list[str], bool]:
    """Return the non-null JSON types a schema declares, and whether it declares null."""
    declared = raw.get("type")
    if isinstance(declared, str):
        kinds = [declared]
    elif isinstance(declared, list):
        kinds = [kind for kind in declared if isinstance(kind, str)]
    else:
        return [], False
    nullable = "null" in kinds
    if nullable:
        kinds = [kind for kind in kinds if kind != "null"] or ["null"]
    if set(kinds) == {"integer", "number"}:
        kinds = ["number"]
    return list(dict.fromkeys(kinds)), nullable and kinds != ["null"]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
