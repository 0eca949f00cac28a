"""The hololinked Thing kind: a Thing's URL and credentials, reauthentication, invoke_action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from homeassistant.config_entries import ConfigFlowResult
from homeassistant.const import CONF_API_KEY, CONF_PASSWORD, CONF_URL, CONF_USERNAME
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse
from homeassistant.helpers import config_validation as cv, selector
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.util import dt as dt_util
import probatio

from ..const import ATTR_CONFIG_ENTRY_ID, CONF_SOURCE_KIND
from ..hub import InstrumentHubConfigEntry
from ..sources.base import AuthenticationFailed, CannotConnect, SourceError
from ..sources.hololinked import (
    Credentials,
    HololinkedSource,
    ThingUrl,
    parse_thing_url,
)
from ..sources.hololinked.client import ThingClient
from ..sources.hololinked.td import NotAThingDescription
from .base import Endpoint, FlowFormError, FlowStep, KindAction, SourceKind, TaskFactory

if TYPE_CHECKING:
    from ..config_flow import InstrumentHubConfigFlow

KIND_NAME: Final = "hololinked"
CONF_THING_ID: Final = "thing_id"
CONF_THING_TITLE: Final = "thing_title"
CREDENTIAL_KEYS: Final = (CONF_USERNAME, CONF_PASSWORD, CONF_API_KEY)
REAUTH_STEP: Final = "hololinked_reauth"
"""The step id of the credentials form of a reauthentication (names its translations)."""

SERVICE_INVOKE_ACTION: Final = "invoke_action"
ATTR_ACTION: Final = "action"
ATTR_INPUT: Final = "input"

INVOKE_ACTION_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
        probatio.Required(ATTR_ACTION): cv.string,
        probatio.Optional(ATTR_INPUT): object,
    }
)

_SECRET: Final = selector.TextSelector(
    selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
)
CREDENTIALS_FIELDS: Final[dict[Any, Any]] = {
    probatio.Optional(CONF_USERNAME): selector.TextSelector(
        selector.TextSelectorConfig(autocomplete="username")
    ),
    probatio.Optional(CONF_PASSWORD): _SECRET,
    probatio.Optional(CONF_API_KEY): _SECRET,
}
THING_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(CONF_URL): selector.TextSelector(
            selector.TextSelectorConfig(type=selector.TextSelectorType.URL)
        ),
        **CREDENTIALS_FIELDS,
    }
)
CREDENTIALS_SCHEMA: Final = probatio.Schema(CREDENTIALS_FIELDS)


async def _async_invoke_action(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Invoke an action of the entry's Thing by name; respond with its output."""
    hub = entry.runtime_data
    source = hub.source
    assert isinstance(source, HololinkedSource)
    name: str = call.data[ATTR_ACTION]
    payload = call.data.get(ATTR_INPUT)
    result = await hub.async_command(
        ("action", name),
        lambda: source.async_invoke(name, payload),
        f"invoke_action {name}",
    )
    return {"output": result.values.get("output")}


def thing_url(data: Mapping[str, Any]) -> ThingUrl:
    """Return the Thing's URL from form or entry data; FlowFormError when it cannot be one."""
    try:
        return parse_thing_url(str(data.get(CONF_URL, "")))
    except ValueError as err:
        raise FlowFormError({CONF_URL: "invalid_url"}) from err


def credentials(data: Mapping[str, Any]) -> Credentials:
    """Return the credentials of form or entry data (empty fields: none)."""
    return Credentials(
        username=data.get(CONF_USERNAME) or None,
        password=data.get(CONF_PASSWORD) or None,
        api_key=data.get(CONF_API_KEY) or None,
    )


def entry_title(thing_title: str, url: ThingUrl) -> str:
    """Return an entry's title: the Thing's title and where it is served."""
    return f"{thing_title} ({url.authority})"


def _credential_data(user_input: Mapping[str, Any]) -> dict[str, str]:
    """Return the credentials to store: trimmed user name and API key, the password as typed."""
    data: dict[str, str] = {}
    username = str(user_input.get(CONF_USERNAME) or "").strip()
    password = str(user_input.get(CONF_PASSWORD) or "")
    api_key = str(user_input.get(CONF_API_KEY) or "").strip()
    if password and not username:
        raise FlowFormError({CONF_USERNAME: "username_required"})
    if username:
        data[CONF_USERNAME] = username
        data[CONF_PASSWORD] = password
    if api_key:
        data[CONF_API_KEY] = api_key
    return data


async def _step_reauth(
    flow: InstrumentHubConfigFlow, entry_data: Mapping[str, Any]
) -> ConfigFlowResult:
    """Start reauthentication: the credentials form for the entry's Thing."""
    return await _step_reauth_credentials(flow, None)


async def _step_reauth_credentials(
    flow: InstrumentHubConfigFlow, user_input: dict[str, Any] | None
) -> ConfigFlowResult:
    """Check new credentials against the same Thing, then store them and reload the entry."""
    entry = flow.hass.config_entries.async_get_known_entry(flow.context["entry_id"])
    errors: dict[str, str] = {}
    if user_input is not None:
        kept = {k: v for k, v in entry.data.items() if k not in CREDENTIAL_KEYS}
        try:
            endpoint = HOLOLINKED_KIND.endpoint({**kept, **user_input})
            checked = await HOLOLINKED_KIND.async_check(flow.hass, endpoint)
        except FlowFormError as err:
            errors = err.errors
        else:
            if checked.data[CONF_THING_ID] == entry.data.get(CONF_THING_ID):
                return flow.async_update_reload_and_abort(
                    entry, data={CONF_SOURCE_KIND: KIND_NAME, **checked.data}
                )
            errors = {"base": "wrong_thing"}
    return flow.async_show_form(
        step_id=REAUTH_STEP,
        data_schema=flow.add_suggested_values_to_schema(
            CREDENTIALS_SCHEMA,
            user_input or {CONF_USERNAME: entry.data.get(CONF_USERNAME, "")},
        ),
        errors=errors,
        description_placeholders={"title": entry.title},
    )


class HololinkedKind(SourceKind):
    """A hololinked Thing served over HTTP: every event, property and action from its TD."""

    name = KIND_NAME
    entry_model = "hololinked Thing"
    redact: ClassVar[frozenset[str]] = frozenset(
        {CONF_URL, CONF_USERNAME, CONF_PASSWORD, CONF_API_KEY}
    )
    actions = (
        KindAction(
            SERVICE_INVOKE_ACTION,
            INVOKE_ACTION_SCHEMA,
            _async_invoke_action,
            returns_response=True,
        ),
    )
    flow_steps: ClassVar[Mapping[str, FlowStep]] = {
        "reauth": _step_reauth,
        REAUTH_STEP: _step_reauth_credentials,
    }

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the URL + credentials form."""
        return THING_SCHEMA

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Check the URL and credentials; the unique id needs the Thing's id from its TD."""
        url = thing_url(user_input)
        return Endpoint(
            unique_id=None,
            title=entry_title(url.thing_path, url),
            data={CONF_URL: url.base, **_credential_data(user_input)},
        )

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Fetch the TD: the Thing's id and title; refuse what is not a Thing or refuses us."""
        url = thing_url(endpoint.data)
        given = credentials(endpoint.data)
        client = ThingClient(async_get_clientsession(hass), url, given)
        try:
            td = await client.fetch_td()
        except AuthenticationFailed as err:
            raise FlowFormError(
                {"base": "auth_required" if given.empty else "invalid_auth"}
            ) from err
        except NotAThingDescription as err:
            raise FlowFormError({"base": "not_thing"}) from err
        except (CannotConnect, SourceError) as err:
            raise FlowFormError({"base": "cannot_connect"}) from err
        if given.empty and {"basic", "apikey"} & set(td.security):
            raise FlowFormError({"base": "auth_required"})
        return Endpoint(
            unique_id=f"{KIND_NAME}:{url.authority}/{td.id}",
            title=entry_title(td.title, url),
            data={**endpoint.data, CONF_THING_ID: td.id, CONF_THING_TITLE: td.title},
        )

    def default_title(self, data: Mapping[str, Any]) -> str:
        """Return the title the flow gives an entry with this data (the Thing's title is stored)."""
        url = thing_url(data)
        return entry_title(str(data.get(CONF_THING_TITLE) or url.thing_path), url)

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> HololinkedSource:
        """Build the Thing's client on Home Assistant's shared HTTP session."""
        return HololinkedSource(
            async_get_clientsession(hass),
            parse_thing_url(entry.data[CONF_URL]),
            credentials(entry.data),
            local_tz=dt_util.get_default_time_zone(),
            task_factory=task_factory,
            on_auth_failed=lambda: entry.async_start_reauth(hass),
        )


HOLOLINKED_KIND: Final = HololinkedKind()
