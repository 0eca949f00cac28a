"""Config flow of the hololinked kind: URL and credentials checked against a (scripted) Thing."""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_API_KEY, CONF_PASSWORD, CONF_URL, CONF_USERNAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.instrument_hub.const import CONF_SOURCE_KIND, DOMAIN
from custom_components.instrument_hub.kinds.hololinked import HOLOLINKED_KIND

from .fake_thing import FakeThing, captured_td, fake_thing
from .peers import free_port

HOLOLINKED = "hololinked"


@pytest.fixture
def mock_setup_entry() -> Iterator[AsyncMock]:
    """Keep the flow tests about the flow: the entry is not set up."""
    with patch(
        "custom_components.instrument_hub.async_setup_entry", return_value=True
    ) as mock:
        yield mock


async def _step(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}
    )
    assert HOLOLINKED in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": HOLOLINKED}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == HOLOLINKED
    return result["flow_id"]


def _entry(hass: HomeAssistant, url: str, **data: str) -> MockConfigEntry:
    checked = {
        CONF_URL: url,
        "thing_id": "energy-meter",
        "thing_title": "FakeMaestro",
        **data,
    }
    authority = url.split("/")[2]
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"FakeMaestro ({authority})",
        unique_id=f"hololinked:{authority}/energy-meter",
        data={CONF_SOURCE_KIND: HOLOLINKED, **checked},
    )
    entry.add_to_hass(hass)
    return entry


async def test_a_thing_is_added_with_its_title_and_id(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """The TD gives the title and the unique id (Thing id + authority); a pasted TD URL works."""
    flow_id = await _step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: f" {thing.url}/resources/wot-td?ignore_errors=true "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"FakeMaestro (127.0.0.1:{thing.port})"
    assert result["data"] == {
        CONF_SOURCE_KIND: HOLOLINKED,
        CONF_URL: thing.url,
        "thing_id": "energy-meter",
        "thing_title": "FakeMaestro",
    }
    assert (
        result["result"].unique_id == f"hololinked:127.0.0.1:{thing.port}/energy-meter"
    )
    # The TD was asked for with hrefs on the authority the user typed.
    assert f"authority=%22http://127.0.0.1:{thing.port}%22" in thing.requests[0]

    flow_id = await _step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


@pytest.mark.parametrize(
    ("user_input", "errors"),
    [
        ({CONF_URL: "lab:8080/energy-meter"}, {CONF_URL: "invalid_url"}),
        ({CONF_URL: "http://lab:8080"}, {CONF_URL: "invalid_url"}),
        ({CONF_URL: "http://u:p@lab:8080/t"}, {CONF_URL: "invalid_url"}),
        (
            {CONF_URL: "http://lab:8080/t", CONF_PASSWORD: "x"},
            {CONF_USERNAME: "username_required"},
        ),
    ],
)
async def test_input_refused_before_any_request(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    user_input: dict[str, str],
    errors: dict[str, str],
) -> None:
    """URLs that cannot name a Thing, a password without a user name."""
    flow_id = await _step(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors


@pytest.mark.usefixtures("socket_enabled")
async def test_cannot_connect_and_not_a_thing(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """Nothing listening: cannot_connect; a 404 page or another JSON document: not_thing."""
    flow_id = await _step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: f"http://127.0.0.1:{free_port()}/energy-meter"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: f"http://127.0.0.1:{thing.port}/another-thing"}
    )
    assert result["errors"] == {"base": "not_thing"}
    thing.td_body = b'{"status": "ok"}'
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url}
    )
    assert result["errors"] == {"base": "not_thing"}
    thing.td_body = None
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_credentials_required_refused_and_accepted(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """401 without credentials asks for them; wrong ones are invalid_auth; right ones are stored."""
    thing.credentials = ("lab", "s3cret")
    flow_id = await _step(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url}
    )
    assert result["errors"] == {"base": "auth_required"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url, CONF_USERNAME: "lab", CONF_PASSWORD: "nope"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: thing.url, CONF_USERNAME: " lab ", CONF_PASSWORD: "s3cret"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert (result["data"][CONF_USERNAME], result["data"][CONF_PASSWORD]) == (
        "lab",
        "s3cret",
    )


async def test_a_td_that_declares_a_scheme_needs_credentials(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, socket_enabled: None
) -> None:
    """A readable TD whose security is an API key still asks for one; with a key it is added."""
    td = {
        **captured_td(),
        "security": ["key"],
        "securityDefinitions": {"key": {"in": "header"}},
    }
    async with fake_thing(td=td) as thing:
        flow_id = await _step(hass)
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: thing.url}
        )
        assert result["errors"] == {"base": "auth_required"}
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_URL: thing.url, CONF_API_KEY: " wotdat-abcde.key "}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"][CONF_API_KEY] == "wotdat-abcde.key"


async def test_reconfigure_to_a_new_url(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """The Thing moved: the entry follows it (new unique id and title), its entities stay."""
    entry = _entry(hass, f"http://127.0.0.1:{free_port()}/energy-meter")
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == HOLOLINKED
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: thing.url}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    assert entry.data[CONF_URL] == thing.url
    assert entry.unique_id == f"hololinked:127.0.0.1:{thing.port}/energy-meter"
    assert entry.title == f"FakeMaestro (127.0.0.1:{thing.port})"


async def test_reconfigure_keeps_a_title_the_user_chose(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """A renamed entry keeps its name."""
    entry = _entry(hass, f"http://127.0.0.1:{free_port()}/energy-meter")
    hass.config_entries.async_update_entry(entry, title="Laser bench meter")
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: thing.url}
    )
    assert result["reason"] == "reconfigure_successful"
    # The entry reloads in a task: let it run now, under this test's mock setup, not at teardown.
    await hass.async_block_till_done()
    assert entry.title == "Laser bench meter"


async def test_reauth_stores_new_credentials(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """Wrong ones are refused on the form; right ones replace the stored ones and reload."""
    thing.credentials = ("lab", "new")
    entry = _entry(hass, thing.url, username="lab", password="old")
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hololinked_reauth"
    placeholders = result["description_placeholders"]
    assert placeholders is not None and placeholders["title"] == entry.title
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: "lab", CONF_PASSWORD: "old"}
    )
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_USERNAME: "lab", CONF_PASSWORD: "new"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_PASSWORD] == "new"
    assert entry.data["thing_id"] == "energy-meter"
    assert entry.data[CONF_SOURCE_KIND] == HOLOLINKED


async def test_reauth_refuses_another_thing(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, thing: FakeThing
) -> None:
    """Credentials that open another Thing at that URL are not this entry's."""
    entry = _entry(hass, thing.url, thing_id="another-meter")
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "k"}
    )
    assert result["errors"] == {"base": "wrong_thing"}


def test_default_title_of_stored_data() -> None:
    """The title an entry would get comes from its stored Thing title (or the URL's last segment)."""
    assert HOLOLINKED_KIND.default_title(
        {CONF_URL: "http://lab:8080/energy-meter", "thing_title": "FakeMaestro"}
    ) == ("FakeMaestro (lab:8080)")
    assert HOLOLINKED_KIND.default_title(
        {CONF_URL: "http://lab:8080/energy-meter"}
    ) == ("energy-meter (lab:8080)")
