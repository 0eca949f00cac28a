"""Names that older versions joined into colliding ids, and the files of devices named in any script.

Keys are escaped (events.join_key): vector "a.b" + member "c" and vector "a" + member "b.c" are two
entities, as are device "x:y" and device "x" with a vector "y:v". Entities and devices registered
under an older version's id are moved to the new one and keep their entity ids.
"""

from __future__ import annotations

import base64
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er

from custom_components.instrument_hub.const import DOMAIN
from custom_components.instrument_hub.events import join_key

from .fake_indi import FakeIndiServer
from .helpers import indi_entry, state_of, wait_for_entity, wait_for_state


def _number(device: str, vector: str, member: str, value: float) -> str:
    return (
        f'<defNumberVector device="{device}" name="{vector}" label="{vector}" group="G" state="Ok" perm="ro">'
        f'<defNumber name="{member}" label="{member}" format="%g" min="0" max="0" step="0">{value}</defNumber>'
        "</defNumberVector>"
    )


async def test_names_with_separators_never_share_an_entity(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """Four properties whose names joined to two ids before are four entities now, each its value."""
    indi_server.definitions = [
        _number("Dev", "a.b", "c", 1),
        _number("Dev", "a", "b.c", 2),
        _number("x:y", "v", "m", 3),
        _number("x", "y:v", "m", 4),
    ]
    entry = indi_entry(hass, indi_server.port)
    assert await hass.config_entries.async_setup(entry.entry_id)
    uids = {
        f"{entry.entry_id}:Dev:{join_key('a.b', 'c')}": "1.0",
        f"{entry.entry_id}:Dev:{join_key('a', 'b.c')}": "2.0",
        f"{entry.entry_id}:x%3Ay:v.m": "3.0",
        f"{entry.entry_id}:x:{join_key('y:v', 'm')}": "4.0",
    }
    for unique_id, value in uids.items():
        entity_id = await wait_for_entity(hass, "sensor", unique_id)
        assert state_of(hass, entity_id) == value, unique_id
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert sorted(d.name or "" for d in devices) == sorted(
        ["Dev", "x", "x:y", f"INDI server 127.0.0.1:{indi_server.port}"]
    )


async def test_ids_of_older_versions_are_migrated(
    hass: HomeAssistant, indi_server: FakeIndiServer
) -> None:
    """An entity and a device saved under the unescaped ids keep their entity id and device."""
    entry = indi_entry(hass, indi_server.port)
    devices = dr.async_get(hass)
    old_device = devices.async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, f"{entry.entry_id}:x:y")},
        name="x:y",
    )
    entities = er.async_get(hass)
    old_entity = entities.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{entry.entry_id}:x:y:a.b.c",
        config_entry=entry,
        suggested_object_id="my_old_sensor",
    )
    plain = entities.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{entry.entry_id}:Plain:volts.value",
        config_entry=entry,
        suggested_object_id="plain_volts",
    )
    indi_server.definitions = [
        _number("x:y", "a.b", "c", 5),
        _number("Plain", "volts", "value", 6),
    ]
    assert await hass.config_entries.async_setup(entry.entry_id)

    await wait_for_state(
        hass, old_entity.entity_id, lambda s: s is not None and s.state == "5.0"
    )
    moved = entities.async_get(old_entity.entity_id)
    assert moved is not None
    assert moved.unique_id == f"{entry.entry_id}:x%3Ay:{join_key('a.b', 'c')}"
    assert moved.device_id == old_device.id
    device = devices.async_get(old_device.id)
    assert device is not None
    assert device.identifiers == {(DOMAIN, f"{entry.entry_id}:x%3Ay")}
    # A name without separators had the same id all along: untouched.
    await wait_for_state(
        hass, plain.entity_id, lambda s: s is not None and s.state == "6.0"
    )
    unchanged = entities.async_get(plain.entity_id)
    assert unchanged is not None and unchanged.unique_id == plain.unique_id


def _blob_def(device: str) -> str:
    return (
        f'<defBLOBVector device="{device}" name="CCD1" label="Image" group="G" state="Ok" perm="ro">'
        '<defBLOB name="CCD1" label="Image"/></defBLOBVector>'
    )


def _blob(device: str, data: bytes) -> str:
    # Whole-second device timestamps, as indilib sends them: the same for every file here.
    return (
        f'<setBLOBVector device="{device}" name="CCD1" state="Ok" timestamp="2026-11-21T05:00:00">'
        f'<oneBLOB name="CCD1" format=".fits" size="{len(data)}">{base64.b64encode(data).decode()}</oneBLOB>'
        "</setBLOBVector>"
    )


async def test_files_of_devices_named_in_any_script_stay_apart(
    hass: HomeAssistant, indi_server: FakeIndiServer, tmp_path: Path
) -> None:
    """Two cameras named in Cyrillic keep separate folders; files in the same second are all kept."""
    hass.config.config_dir = str(tmp_path)
    indi_server.definitions = [_blob_def("Телескоп"), _blob_def("Камера")]
    entry = indi_entry(hass, indi_server.port, {"blob_keep": 2})
    assert await hass.config_entries.async_setup(entry.entry_id)
    telescope = await wait_for_entity(
        hass, "event", f"{entry.entry_id}:Телескоп:CCD1.CCD1"
    )
    camera = await wait_for_entity(hass, "event", f"{entry.entry_id}:Камера:CCD1.CCD1")
    await indi_server.wait_received(b"<enableBLOB", count=2)

    def saved(data: bytes) -> object:
        return lambda state: (
            state is not None
            and state.attributes.get("path") is not None
            and Path(state.attributes["path"]).read_bytes() == data
        )

    await indi_server.push(_blob("Камера", b"camera-1"))
    camera_state = await wait_for_state(hass, camera, saved(b"camera-1"))  # type: ignore[arg-type]
    assert camera_state is not None
    camera_file = Path(camera_state.attributes["path"])
    paths = []
    for index in range(3):
        data = b"telescope-%d" % index
        await indi_server.push(_blob("Телескоп", data))
        state = await wait_for_state(hass, telescope, saved(data))  # type: ignore[arg-type]
        assert state is not None
        paths.append(Path(state.attributes["path"]))
    assert camera_file.read_bytes() == b"camera-1"
    assert camera_file.parent.parent.name == "Камера"
    assert paths[0].parent.parent.name == "Телескоп"
    assert len(set(paths)) == 3
    assert sorted(p.read_bytes() for p in paths[0].parent.iterdir()) == [
        b"telescope-1",
        b"telescope-2",
    ]
