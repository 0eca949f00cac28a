"""The Powersensor kind: one entry per household, found by scanning, by plug address or by zeroconf.

Setup scans the broadcast addresses (by default those of Home Assistant's own network settings,
editable) and/or listens to plug addresses the user gives; a zeroconf announcement of a plug
(``_powersensor._udp.local.``) offers the household once, and afterwards only tells the existing
entry where that plug is now (discovery-update-info: no second entry, no reload). The entry data
keeps what the source learnt (each plug's MAC -> IP, whether solar was seen) so a restart finds
the plugs at once. Disabling a device in Home Assistant stops its readings at the source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
import ipaddress
import re
from typing import TYPE_CHECKING, Any, ClassVar, Final

from homeassistant.components import network
from homeassistant.components.network.models import Adapter
from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_ZEROCONF,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlowResult,
)
from homeassistant.core import (
    Event,
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    async_get_hass_or_none,
    callback,
)
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
    selector,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
import probatio

from ..const import ATTR_CONFIG_ENTRY_ID, DOMAIN
from ..hub import InstrumentHubConfigEntry
from ..sources.powersensor import PowersensorSettings, PowersensorSource
from ..sources.powersensor.client import ProbeFailed, probe_plug, scan
from ..sources.powersensor.mapping import plug_name
from ..sources.powersensor.protocol import ipv4_address, normalize_mac
from ..sources.powersensor.source import DEFAULT_PLUG_TIMEOUT, DEFAULT_SENSOR_TIMEOUT
from .base import (
    Endpoint,
    FlowFormError,
    FlowStep,
    KindAction,
    OptionsForm,
    SourceKind,
    TaskFactory,
)

if TYPE_CHECKING:
    from ..config_flow import InstrumentHubConfigFlow

CONF_BROADCAST: Final = "broadcast_addresses"
CONF_PLUG_HOSTS: Final = "plug_hosts"
CONF_PLUGS: Final = "plugs"
"""Entry data: MAC -> IP of every plug found (kept current by the source)."""
CONF_WITH_SOLAR: Final = "with_solar"
CONF_PLUG_TIMEOUT: Final = "plug_timeout"
CONF_SENSOR_TIMEOUT: Final = "sensor_timeout"

HOUSEHOLD_UNIQUE_ID: Final = "powersensor:household"
"""One entry covers the household's Powersensor network: a plug found later joins it."""
TITLE: Final = "Powersensor network"
SCAN_SECONDS: Final = 2.0
PROBE_SECONDS: Final = 3.0
SERVICE_RESCAN: Final = "rescan"
STEP_ZEROCONF_CONFIRM: Final = "zeroconf_confirm"
ZEROCONF_TYPE: Final = "_powersensor._udp.local."

_SEPARATORS: Final = re.compile(r"[\s,;]+")
_ADDRESS_LIST: Final = selector.TextSelector(selector.TextSelectorConfig(multiple=True))


def _timeout_selector(minimum: int, maximum: int) -> selector.NumberSelector:
    return selector.NumberSelector(
        selector.NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=1,
            unit_of_measurement="s",
            mode=selector.NumberSelectorMode.BOX,
        )
    )


OPTIONS_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(CONF_PLUG_TIMEOUT): _timeout_selector(2, 600),
        probatio.Required(CONF_SENSOR_TIMEOUT): _timeout_selector(10, 3600),
    }
)


def broadcast_addresses(adapters: Iterable[Adapter]) -> list[str]:
    """Return the IPv4 broadcast address of every enabled adapter of Home Assistant's network settings."""
    found: list[str] = []
    for adapter in adapters:
        if not adapter["enabled"]:
            continue
        for info in adapter["ipv4"]:
            interface = ipaddress.IPv4Interface(
                f"{info['address']}/{info['network_prefix']}"
            )
            if interface.network.prefixlen >= 31:
                continue  # point-to-point: no broadcast address
            address = str(interface.network.broadcast_address)
            if address not in found:
                found.append(address)
    return found


def default_broadcast_addresses() -> list[str]:
    """Return the broadcast addresses of Home Assistant's network settings (as loaded now)."""
    hass = async_get_hass_or_none()
    if hass is None:
        return []
    try:
        adapters = network.async_get_loaded_adapters(hass)
    except (
        KeyError
    ):  # the network integration is not set up (it is a dependency: only in tests)
        return []
    return broadcast_addresses(adapters)


def _address_list(value: object, field: str) -> list[str]:
    """Return the IPv4 addresses of a list field (items may hold several, comma-separated)."""
    items = value if isinstance(value, list | tuple) else [value]
    addresses: list[str] = []
    for item in items:
        for part in _SEPARATORS.split(str(item or "")):
            if not part:
                continue
            address = ipv4_address(part)
            if address is None:
                raise FlowFormError({field: "invalid_address"})
            if address not in addresses:
                addresses.append(address)
    return addresses


async def _async_rescan(
    call: ServiceCall, entry: InstrumentHubConfigEntry
) -> ServiceResponse:
    """Scan for plugs now; respond with how many answered."""
    source = entry.runtime_data.source
    assert isinstance(source, PowersensorSource)
    return {"plugs_answered": await source.async_rescan()}


# --------------------------------------------------------------------------------------------------
# Zeroconf


def _announced_plug(info: ZeroconfServiceInfo) -> tuple[str, str] | None:
    """Return (MAC, IPv4) of an announcement: TXT ``id`` is the plug's MAC (firmware 8129+)."""
    mac = normalize_mac(info.properties.get("id"))
    ip = next(
        (str(address) for address in info.ip_addresses if address.version == 4), None
    )
    return (mac, ip) if mac is not None and ip is not None else None


async def _async_step_zeroconf(
    flow: InstrumentHubConfigFlow, info: ZeroconfServiceInfo
) -> ConfigFlowResult:
    """Follow an announced plug in the household's entry, or offer the household."""
    plug = _announced_plug(info)
    if plug is None:
        return flow.async_abort(reason="not_powersensor_plug")
    mac, ip = plug
    entry = flow.hass.config_entries.async_entry_for_domain_unique_id(
        DOMAIN, HOUSEHOLD_UNIQUE_ID
    )
    if entry is not None and entry.source != SOURCE_IGNORE:
        _follow_plug(flow.hass, entry, mac, ip)
    # Aborts (already_configured) for a known household: the plug joined it above.
    await flow.async_claim_unique_id(HOUSEHOLD_UNIQUE_ID)
    flow.context["title_placeholders"] = {"name": plug_name(mac)}
    flow.context["confirm_only"] = True
    return await _async_step_zeroconf_confirm(flow, None)


def _follow_plug(hass: HomeAssistant, entry: ConfigEntry, mac: str, ip: str) -> None:
    """Record the plug's address in the entry (no reload) and tell the running source."""
    plugs = dict(entry.data.get(CONF_PLUGS, {}))
    if plugs.get(mac) != ip:
        plugs[mac] = ip
        hass.config_entries.async_update_entry(
            entry, data={**entry.data, CONF_PLUGS: plugs}
        )
    if entry.state is ConfigEntryState.LOADED:
        source = entry.runtime_data.source
        assert isinstance(
            source, PowersensorSource
        )  # the household's unique id is this kind's
        source.plug_announced(mac, ip)


def _confirm_form(
    flow: InstrumentHubConfigFlow, mac: str, ip: str, errors: dict[str, str]
) -> ConfigFlowResult:
    return flow.async_show_form(
        step_id=STEP_ZEROCONF_CONFIRM,
        description_placeholders={"name": plug_name(mac), "host": ip},
        errors=errors,
    )


async def _async_step_zeroconf_confirm(
    flow: InstrumentHubConfigFlow, user_input: dict[str, Any] | None
) -> ConfigFlowResult:
    """Add the household of the announced plug (after listening to it, and scanning for the others)."""
    assert isinstance(flow.init_data, ZeroconfServiceInfo)
    plug = _announced_plug(flow.init_data)
    assert plug is not None  # checked by the zeroconf step
    mac, ip = plug
    if user_input is None:
        return _confirm_form(flow, mac, ip, {})
    adapters = await network.async_get_adapters(flow.hass)
    endpoint = Endpoint(
        HOUSEHOLD_UNIQUE_ID,
        TITLE,
        {
            CONF_BROADCAST: broadcast_addresses(adapters),
            CONF_PLUG_HOSTS: [],
            CONF_PLUGS: {mac: ip},
        },
    )
    try:
        endpoint = await KIND.async_check(flow.hass, endpoint)
    except FlowFormError as err:
        return _confirm_form(flow, mac, ip, err.errors)
    return await flow.async_finish(KIND, endpoint)


# --------------------------------------------------------------------------------------------------
# Devices disabled in Home Assistant


@callback
def _follow_disabled_entities(
    hass: HomeAssistant, entry: ConfigEntry, source: PowersensorSource
) -> None:
    """Mute the channels of disabled entities (the noisy ones start disabled) at the source.

    A disabled entity shows nothing, so its readings need not travel through the hub at all (a plug
    report has six values; four of them are disabled by default).
    """
    registry = er.async_get(hass)

    def apply(entity: er.RegistryEntry) -> None:
        identifier, _, channel_key = entity.unique_id.partition(":")
        if entity.platform == DOMAIN and channel_key:
            source.set_channel_enabled(
                identifier, channel_key, entity.disabled_by is None
            )

    for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
        apply(entity)

    @callback
    def updated(event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        data = event.data
        if data["action"] == "remove":
            return
        if data["action"] == "update" and "disabled_by" not in data["changes"]:
            return
        entity = registry.async_get(data["entity_id"])
        if entity is not None and entity.config_entry_id == entry.entry_id:
            apply(entity)

    entry.async_on_unload(
        hass.bus.async_listen(er.EVENT_ENTITY_REGISTRY_UPDATED, updated)
    )


@callback
def _follow_disabled_devices(
    hass: HomeAssistant, entry: ConfigEntry, source: PowersensorSource
) -> None:
    """Mute disabled devices at the source now and whenever one is disabled or enabled."""
    registry = dr.async_get(hass)

    def apply(device: dr.BaseDeviceEntry) -> None:
        for domain, identifier in device.identifiers:
            if domain == DOMAIN:
                source.set_device_enabled(identifier, device.disabled_by is None)

    for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
        apply(device)

    @callback
    def updated(event: Event[dr.EventDeviceRegistryUpdatedData]) -> None:
        data = event.data
        if data["action"] != "update" or "disabled_by" not in data["changes"]:
            return
        device = registry.async_get(data["device_id"])
        if device is not None and device.config_entry_id == entry.entry_id:
            apply(device)

    entry.async_on_unload(
        hass.bus.async_listen(dr.EVENT_DEVICE_REGISTRY_UPDATED, updated)
    )


# --------------------------------------------------------------------------------------------------
# The kind


class PowersensorKind(SourceKind):
    """A household's Powersensor plugs and the sensors they relay."""

    name = "powersensor"
    entry_model = "Powersensor network"
    redact: ClassVar[frozenset[str]] = frozenset(
        {CONF_BROADCAST, CONF_PLUG_HOSTS, CONF_PLUGS, "host", "ip", "mac", "name"}
    )
    actions = (
        KindAction(
            SERVICE_RESCAN,
            probatio.Schema({probatio.Required(ATTR_CONFIG_ENTRY_ID): cv.string}),
            _async_rescan,
            returns_response=True,
        ),
    )
    flow_steps: ClassVar[Mapping[str, FlowStep]] = {
        "zeroconf": _async_step_zeroconf,
        STEP_ZEROCONF_CONFIRM: _async_step_zeroconf_confirm,
    }

    def accepts_discovery(self, source: str, discovery_info: object) -> bool:
        """Take zeroconf announcements of Powersensor plugs only."""
        return (
            source == SOURCE_ZEROCONF
            and isinstance(discovery_info, ZeroconfServiceInfo)
            and discovery_info.type == ZEROCONF_TYPE
        )

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the form: broadcast addresses to scan (Home Assistant's own by default), plug addresses."""
        return probatio.Schema(
            {
                probatio.Optional(
                    CONF_BROADCAST, default=default_broadcast_addresses()
                ): _ADDRESS_LIST,
                probatio.Optional(CONF_PLUG_HOSTS, default=[]): _ADDRESS_LIST,
            }
        )

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Check the addresses (IPv4: the plug API has no IPv6); one household, one unique id."""
        broadcast = _address_list(user_input.get(CONF_BROADCAST, []), CONF_BROADCAST)
        hosts = _address_list(user_input.get(CONF_PLUG_HOSTS, []), CONF_PLUG_HOSTS)
        if not broadcast and not hosts:
            raise FlowFormError({"base": "no_addresses"})
        return Endpoint(
            HOUSEHOLD_UNIQUE_ID,
            TITLE,
            {CONF_BROADCAST: broadcast, CONF_PLUG_HOSTS: hosts},
        )

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Scan and listen to the plug addresses; at least one plug must answer."""
        data = dict(endpoint.data)
        broadcast: list[str] = data[CONF_BROADCAST]
        hosts: list[str] = data[CONF_PLUG_HOSTS]
        announced: dict[str, str] = dict(data.get(CONF_PLUGS, {}))
        probed = list(dict.fromkeys([*hosts, *announced.values()]))
        results = await asyncio.gather(
            scan(broadcast, seconds=SCAN_SECONDS),
            *(probe_plug(host, timeout=PROBE_SECONDS) for host in probed),
            return_exceptions=True,
        )
        found, probes = results[0], results[1:]
        plugs = dict(found) if isinstance(found, dict) else {}
        for host, result in zip(probed, probes, strict=True):
            if isinstance(result, ProbeFailed | OSError):
                field = CONF_PLUG_HOSTS if host in hosts else "base"
                raise FlowFormError({field: "plug_not_answering"})
            if isinstance(result, BaseException):
                raise result
            plugs[result] = host
        if not plugs:
            raise FlowFormError({"base": "no_plugs_found"})
        existing = hass.config_entries.async_entry_for_domain_unique_id(
            DOMAIN, HOUSEHOLD_UNIQUE_ID
        )
        with_solar = False
        if existing is not None:  # reconfigure: keep what the source learnt
            plugs = {**existing.data.get(CONF_PLUGS, {}), **plugs}
            with_solar = bool(existing.data.get(CONF_WITH_SOLAR, False))
        data[CONF_PLUGS] = plugs
        data[CONF_WITH_SOLAR] = with_solar
        return Endpoint(endpoint.unique_id, endpoint.title, data)

    def default_title(self, data: Mapping[str, Any]) -> str:
        """Every household entry has the same title."""
        return TITLE

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> PowersensorSource:
        """Build the source from the entry; it keeps the plugs' addresses current in the entry."""
        data, options = entry.data, entry.options

        @callback
        def on_state(plugs: dict[str, str], with_solar: bool) -> None:
            if plugs != entry.data.get(CONF_PLUGS) or with_solar != entry.data.get(
                CONF_WITH_SOLAR
            ):
                hass.config_entries.async_update_entry(
                    entry,
                    data={**entry.data, CONF_PLUGS: plugs, CONF_WITH_SOLAR: with_solar},
                )

        source = PowersensorSource(
            PowersensorSettings(
                broadcast_addresses=tuple(data.get(CONF_BROADCAST, ())),
                plug_hosts=tuple(data.get(CONF_PLUG_HOSTS, ())),
                known_plugs=dict(data.get(CONF_PLUGS, {})),
                plug_timeout=float(
                    options.get(CONF_PLUG_TIMEOUT, DEFAULT_PLUG_TIMEOUT)
                ),
                sensor_timeout=float(
                    options.get(CONF_SENSOR_TIMEOUT, DEFAULT_SENSOR_TIMEOUT)
                ),
                with_solar=bool(data.get(CONF_WITH_SOLAR, False)),
                scan_seconds=SCAN_SECONDS,
            ),
            on_state=on_state,
            task_factory=task_factory,
        )
        _follow_disabled_devices(hass, entry, source)
        _follow_disabled_entities(hass, entry, source)
        return source

    def options_form(self, entry: ConfigEntry) -> OptionsForm:
        """Return the silence thresholds."""
        return OptionsForm(
            step_id=self.name,
            schema=OPTIONS_SCHEMA,
            defaults={
                CONF_PLUG_TIMEOUT: DEFAULT_PLUG_TIMEOUT,
                CONF_SENSOR_TIMEOUT: DEFAULT_SENSOR_TIMEOUT,
            },
            validate=_validate_options,
        )


def _validate_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    return {
        CONF_PLUG_TIMEOUT: float(user_input[CONF_PLUG_TIMEOUT]),
        CONF_SENSOR_TIMEOUT: float(user_input[CONF_SENSOR_TIMEOUT]),
    }


KIND: Final = PowersensorKind()
