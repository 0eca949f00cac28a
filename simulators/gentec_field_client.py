"""Drive the Maestro emulator with a field client: QCoDeS' ``Gentec_Maestro`` over pyvisa-py.

Runs in .venv-peers (qcodes-contrib-drivers, pyvisa-py). ``python -m simulators.gentec_field_client
ADDRESS`` opens ``ADDRESS`` (``ASRL/dev/pts/N::INSTR`` or ``TCPIP::127.0.0.1::PORT::SOCKET``) the way
a lab script would, reads identity, power, wavelength and zero offset, sets a wavelength, reads it
back, and prints what it saw as one JSON line. Any exception exits non-zero with the traceback.
"""

from __future__ import annotations

import json
import sys


def main(address: str) -> None:
    """Run the client once against ``address`` and print its observations."""
    # Only in .venv-peers (Python 3.11), not in the venv that type-checks.
    from qcodes.instrument import (  # type: ignore[import-not-found]  # noqa: PLC0415
        Instrument,
    )
    from qcodes_contrib_drivers.drivers.Gentec.Gentec_Maestro import (  # type: ignore[import-not-found]  # noqa: PLC0415
        Gentec_Maestro,
    )

    meter = Gentec_Maestro(
        "maestro", address, visalib="@py", terminator="\r\n", timeout=2
    )
    try:
        seen = {
            "idn": meter.get_idn(),
            "power": meter.power(),
            "wavelength": meter.wavelength(),
            "zero_offset_enabled": meter.zero_offset_enabled(),
        }
        meter.wavelength(1550)
        seen["wavelength_after_set"] = meter.wavelength()
        meter.set_zero_offset()
        meter.clear_zero_offset()
    finally:
        meter.close()
        Instrument.close_all()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
