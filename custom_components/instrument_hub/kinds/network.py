"""Host and port forms shared by the kinds reached over TCP (INDI server, Scrutiny server)."""

from __future__ import annotations

from collections.abc import Mapping
import ipaddress
import re
from typing import Any, ClassVar, Final

from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.helpers import selector
import probatio

from ..sources.base import CannotConnect
from ..sources.probe import tcp_probe
from .base import Endpoint, FlowFormError, SourceKind

PORT_SELECTOR: Final = selector.NumberSelector(
    selector.NumberSelectorConfig(
        min=1, max=65535, step=1, mode=selector.NumberSelectorMode.BOX
    )
)
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_HOST: Final = 253


def host_port_schema(default_port: int) -> probatio.Schema:
    """Return a host + port form."""
    return probatio.Schema(
        {
            probatio.Required(CONF_HOST): selector.TextSelector(),
            probatio.Required(CONF_PORT, default=default_port): PORT_SELECTOR,
        }
    )


def is_valid_host(host: str) -> bool:
    """Tell whether ``host`` is an IP address or a syntactically valid host name (RFC 1123)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return True
    name = host.removesuffix(".")
    return 0 < len(name) <= _MAX_HOST and all(
        _LABEL.fullmatch(label) for label in name.split(".")
    )


def host_and_port(user_input: Mapping[str, Any]) -> tuple[str, int]:
    """Return the form's host (trimmed) and port; FlowFormError for a host that cannot be one."""
    host = str(user_input[CONF_HOST]).strip()
    if not is_valid_host(host):
        raise FlowFormError({CONF_HOST: "invalid_host"})
    return host, int(user_input[CONF_PORT])


async def async_check_reachable(host: str, port: int) -> None:
    """Open and close a TCP connection; FlowFormError cannot_connect when it is refused."""
    try:
        await tcp_probe(host, port)
    except CannotConnect as err:
        raise FlowFormError({"base": "cannot_connect"}) from err


class TcpServerKind(SourceKind):
    """A kind whose endpoint is a server at host:port: the form, the endpoint, what to redact.

    The entry's unique id is ``<kind>:<host, lower case>:<port>``, its title ``<entry_model> host:port``.
    """

    default_port: ClassVar[int]
    redact: ClassVar[frozenset[str]] = frozenset({CONF_HOST, "host"})

    def schema(self, values: Mapping[str, Any]) -> probatio.Schema:
        """Return the host/port form."""
        return host_port_schema(self.default_port)

    def endpoint(self, user_input: Mapping[str, Any]) -> Endpoint:
        """Describe the server: unique id and title from host and port."""
        host, port = host_and_port(user_input)
        return Endpoint(
            unique_id=f"{self.name}:{host.lower()}:{port}",
            title=f"{self.entry_model} {host}:{port}",
            data={CONF_HOST: host, CONF_PORT: port},
        )
