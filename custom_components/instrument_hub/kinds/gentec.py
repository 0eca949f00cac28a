"""The Gentec-EO meter kind: a serial port (or pyserial URL), USB discovery, acquisition options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import os
from pathlib import Path
import re
from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from homeassistant.config_entries import ConfigEntry, ConfigFlowResult
from homeassistant.const import CONF_DEVICE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector
from homeassistant.helpers.service_info.usb import UsbServiceInfo
import probatio
from serial.tools.list_ports import comports

from ..const import CONF_SOURCE_KIND, DOMAIN
from ..hub import InstrumentHubConfigEntry
from ..sources.base import CannotConnect, SourceError
from ..sources.gentec import AcquisitionMode, GentecSource
from ..sources.gentec.client import MaestroConnection
from ..sources.gentec.mapping import GAP_MAX, GAP_MIN
from ..sources.gentec.source import (
    DEFAULT_GAP,
    DEFAULT_MAX_WRITES,
    DEFAULT_MODE,
    Identity,
    identify,
)
from .base import (
    Endpoint,
    FlowFormError,
    FlowStep,
    OptionsForm,
    SourceKind,
    TaskFactory,
)

if TYPE_CHECKING:
    from ..config_flow import InstrumentHubConfigFlow

CONF_MODEL: Final = "model"
CONF_ACQUISITION: Final = "acquisition"
CONF_GAP: Final = "measurement_gap"
CONF_MAX_WRITES: Final = "max_writes"
BY_ID: Final = Path("/dev/serial/by-id")
MAX_WRITES_LIMIT: Final = 50
STEP_USB_CONFIRM: Final = "usb_confirm"
_URL: Final = re.compile(r"[a-z][a-z0-9+]*://\S+")
_WINDOWS_PORT: Final = re.compile(r"COM\d+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PortChoice:
    """A serial port offered in the form: what is stored, and how a user recognises it."""

    value: str
    label: str


def _by_id_links() -> dict[str, str]:
    """Return /dev/serial/by-id links by the device they point at (stable names for USB ports)."""
    if not BY_ID.is_dir():
        return {}
    return {
        os.path.realpath(entry.path): entry.path
        for entry in os.scandir(BY_ID)
        if entry.is_symlink()
    }


def stable_path(device: str) -> str:
    """Return the /dev/serial/by-id name of a device when it has one (blocking: executor)."""
    return _by_id_links().get(os.path.realpath(device), device)


def list_serial_ports() -> list[PortChoice]:
    """Return the machine's serial ports, by-id paths preferred (blocking: executor)."""
    links = _by_id_links()
    choices: list[PortChoice] = []
    for port in sorted(comports(), key=lambda info: info.device):
        value = links.get(os.path.realpath(port.device), port.device)
        details = [value, f"s/n: {port.serial_number or 'n/a'}"]
        if port.manufacturer:
            details.append(port.manufacturer)
        description = port.description if port.description not in (None, "n/a") else ""
        label = " - ".join(
            [description, ", ".join(details)] if description else [", ".join(details)]
        )
        choices.append(PortChoice(value, label))
    return choices


def port_label(port: str) -> str:
    """Return a short name of a port for titles: the device name, or the URL's host:port."""
    if _URL.fullmatch(port):
        return urlsplit(port).netloc or port
    return Path(port).name or port


def _form(choices: list[PortChoice]) -> probatio.Schema:
    return probatio.Schema(
        {
            probatio.Required(CONF_DEVICE): selector.SelectSelector(
                selector.SelectSelectorConfig(
                    options=[
                        selector.SelectOptionDict(value=c.value, label=c.label)
                        for c in choices
                    ],
                    custom_value=True,
                    mode=selector.SelectSelectorMode.DROPDOWN,
                )
            )
        }
    )


def _check_port(value: object) -> str:
    port = str(value).strip()
    if not port or not (
        port.startswith("/") or _URL.fullmatch(port) or _WINDOWS_PORT.fullmatch(port)
    ):
        raise FlowFormError({CONF_DEVICE: "invalid_port"})
    return port


async def probe(port: str) -> Identity:
    """Open the port, ask the meter who it is and close again; FlowFormError otherwise."""

    def ignore(*_args: object) -> None:
        return

    connection = MaestroConnection(port, on_value=ignore, on_lost=ignore)
    try:
        await connection.open()
    except CannotConnect as err:
        raise FlowFormError({"base": "cannot_connect"}) from err
    try:
        return await identify(connection)
    except SourceError as err:
        raise FlowFormError({"base": "not_gentec"}) from err
    finally:
        await connection.close()


_DISCOVERED: WeakKeyDictionary[InstrumentHubConfigFlow, tuple[Endpoint, Identity]] = (
    WeakKeyDictionary()
)
"""What a USB discovery found, kept for its confirm step (forgotten with the flow)."""


async def _step_usb(
    flow: InstrumentHubConfigFlow, info: UsbServiceInfo
) -> ConfigFlowResult:
    """Probe a Gentec USB device that was plugged in, then ask the user to confirm."""
    kind = GENTEC_KIND
    port = await flow.hass.async_add_executor_job(stable_path, info.device)
    for entry in flow.hass.config_entries.async_entries(flow.handler):
        if entry.data.get(CONF_DEVICE) in (port, info.device):
            return flow.async_abort(reason="already_configured")
    try:
        endpoint, identity = await kind.async_identify(port)
    except FlowFormError as err:
        return flow.async_abort(reason=err.errors.get("base", "cannot_connect"))
    assert endpoint.unique_id is not None
    await flow.async_claim_unique_id(endpoint.unique_id)
    _DISCOVERED[flow] = (endpoint, identity)
    flow.context["title_placeholders"] = {"name": endpoint.title}
    return await _step_usb_confirm(flow, None)


async def _step_usb_confirm(
    flow: InstrumentHubConfigFlow, user_input: dict[str, Any] | None
) -> ConfigFlowResult:
    """Show model and firmware of the discovered meter; create the entry when confirmed."""
    endpoint, identity = _DISCOVERED[flow]
    if user_input is not None:
        return await flow.async_finish(GENTEC_KIND, endpoint)
    flow._set_confirm_only()  # noqa: SLF001 - Home Assistant's own confirm-only helper
    return flow.async_show_form(
        step_id=STEP_USB_CONFIRM,
        description_placeholders={
            "model": identity.version.model,
            "firmware": identity.version.firmware,
            "detector": identity.status.name or "-",
            "port": endpoint.data[CONF_DEVICE],
        },
    )


OPTIONS_SCHEMA: Final = probatio.Schema(
    {
        probatio.Required(CONF_ACQUISITION): selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=[mode.value for mode in AcquisitionMode],
                translation_key=CONF_ACQUISITION,
                mode=selector.SelectSelectorMode.LIST,
            )
        ),
        probatio.Required(CONF_GAP): selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=GAP_MIN,
                max=GAP_MAX,
                step=0.01,
                unit_of_measurement="s",
                mode=selector.NumberSelectorMode.BOX,
            )
        ),
        probatio.Required(CONF_MAX_WRITES): selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=1,
                max=MAX_WRITES_LIMIT,
                step=1,
                unit_of_measurement="/s",
                mode=selector.NumberSelectorMode.BOX,
            )
        ),
    }
)


def validate_options(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return the acquisition options to store."""
    mode = str(user_input[CONF_ACQUISITION])
    if mode not in {m.value for m in AcquisitionMode}:
        raise FlowFormError({CONF_ACQUISITION: "invalid_acquisition"})
    gap = float(user_input[CONF_GAP])
    if not GAP_MIN <= gap <= GAP_MAX:
        raise FlowFormError({CONF_GAP: "invalid_gap"})
    writes = float(user_input[CONF_MAX_WRITES])
    if not 1 <= writes <= MAX_WRITES_LIMIT:
        raise FlowFormError({CONF_MAX_WRITES: "invalid_max_writes"})
    return {CONF_ACQUISITION: mode, CONF_GAP: gap, CONF_MAX_WRITES: writes}


OPTIONS_FORM: Final = OptionsForm(
    step_id="gentec",
    schema=OPTIONS_SCHEMA,
    defaults={
        CONF_ACQUISITION: DEFAULT_MODE.value,
        CONF_GAP: DEFAULT_GAP,
        CONF_MAX_WRITES: DEFAULT_MAX_WRITES,
    },
    validate=validate_options,
)


class GentecKind(SourceKind):
    """A Gentec-EO MAESTRO or INTEGRA meter on a serial port, USB or behind ser2net."""

    name = "gentec"
    entry_model = "Serial port"
    redact: ClassVar[frozenset[str]] = frozenset(
        {CONF_DEVICE, "port", "serial_number", "detector"}
    )
    flow_steps: ClassVar[Mapping[str, FlowStep]] = {
        "usb": _step_usb,
        STEP_USB_CONFIRM: _step_usb_confirm,
    }

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the form without a port list (a typed path or URL)."""
        return _form([])

    async def async_schema(
        self, hass: HomeAssistant, values: Mapping[str, Any]
    ) -> probatio.Schema:
        """Return the form with the machine's serial ports listed (read in the executor)."""
        return _form(await hass.async_add_executor_job(list_serial_ports))

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Check the port's spelling; its unique id comes from the meter (the check)."""
        port = _check_port(user_input[CONF_DEVICE])
        model = str(user_input.get(CONF_MODEL) or "Gentec-EO meter")
        data: dict[str, Any] = {CONF_DEVICE: port}
        if CONF_MODEL in user_input:
            data[CONF_MODEL] = model
        return Endpoint(None, f"{model} ({port_label(port)})", data)

    async def async_identify(self, port: str) -> tuple[Endpoint, Identity]:
        """Ask the meter on ``port``; the unique id is the head's serial, else the port."""
        identity = await probe(port)
        serial_number = identity.status.serial
        model = identity.version.model or "Gentec-EO meter"
        endpoint = self.endpoint({CONF_DEVICE: port, CONF_MODEL: model})
        unique_id = f"gentec:{serial_number}" if serial_number else f"gentec:{port}"
        return Endpoint(unique_id, endpoint.title, endpoint.data), identity

    async def async_check(self, hass: HomeAssistant, endpoint: Endpoint) -> Endpoint:
        """Open the port and check that a Gentec-EO meter answers ``*VER``.

        A port an entry is using is that entry's meter: it is not opened a second time (that would
        disturb the acquisition, or fail on a port opened exclusively), its unique id is the entry's.
        """
        port = endpoint.data[CONF_DEVICE]
        if (owner := await self._entry_on(hass, port)) is not None:
            model = owner.data.get(CONF_MODEL, "Gentec-EO meter")
            known = self.endpoint({CONF_DEVICE: port, CONF_MODEL: model})
            return Endpoint(owner.unique_id, known.title, known.data)
        completed, _identity = await self.async_identify(port)
        return completed

    async def _entry_on(self, hass: HomeAssistant, port: str) -> ConfigEntry | None:
        """Return the loaded entry of this kind whose port is ``port`` (links resolved), if any."""
        entries = [
            entry
            for entry in hass.config_entries.async_loaded_entries(DOMAIN)
            if entry.data.get(CONF_SOURCE_KIND) == self.name
        ]
        if not entries:
            return None

        def same_device(first: str, second: str) -> bool:
            if first.startswith("/") and second.startswith("/"):
                return os.path.realpath(first) == os.path.realpath(second)
            return first == second

        for entry in entries:
            if await hass.async_add_executor_job(
                same_device, entry.data[CONF_DEVICE], port
            ):
                return entry
        return None

    def create_source(
        self,
        hass: HomeAssistant,
        entry: InstrumentHubConfigEntry,
        task_factory: TaskFactory,
    ) -> GentecSource:
        """Build the acquisition from the port and the options."""
        options = {**OPTIONS_FORM.defaults, **entry.options}
        return GentecSource(
            entry.data[CONF_DEVICE],
            mode=AcquisitionMode(options[CONF_ACQUISITION]),
            gap=float(options[CONF_GAP]),
            max_writes=float(options[CONF_MAX_WRITES]),
            task_factory=task_factory,
        )

    def options_form(self, entry: ConfigEntry) -> OptionsForm:
        """Return the acquisition options."""
        return OPTIONS_FORM


GENTEC_KIND: Final = GentecKind()
