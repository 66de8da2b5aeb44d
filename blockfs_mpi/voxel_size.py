"""One voxel size with its unit, parsed once and carried everywhere a volume goes.

On the command line: `--voxel-size 1.8,1.8,2.0um` (x, y, z), or the numbers
with `--unit micrometer`; numbers with no unit are nanometres, as the
precomputed `info` has always taken them. In a volume: the application
metadata keys `VoxelSize` ([x, y, z]) and `VoxelSizeUnit` (a UDUNITS-2 name
as OME-Zarr uses); a `VoxelSize` without a unit, as labs wrote with the
original blockfs, is in micrometres. Neuroglancer's precomputed `info` gets
nanometres, OME-Zarr the size in its own unit.
"""
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import OptionError

# UDUNITS-2 names OME-Zarr allows for space axes, with their size in nanometres and the
# short spellings a user may type.
UNITS = {
    "angstrom": (0.1, ("a", "å")),
    "nanometer": (1.0, ("nm",)),
    "micrometer": (1e3, ("um", "µm", "micron")),
    "millimeter": (1e6, ("mm",)),
    "centimeter": (1e7, ("cm",)),
    "meter": (1e9, ("m",)),
}
SPELLINGS = {alias: name for name, (_, aliases) in UNITS.items()
             for alias in (name, name + "s", *aliases)}
METADATA_SIZE, METADATA_UNIT = "VoxelSize", "VoxelSizeUnit"
LEGACY_UNIT = "micrometer"  # a VoxelSize with no unit, as the original blockfs's users wrote it


@dataclass(frozen=True)
class VoxelSize:
    """The size of one voxel along x, y and z, in `unit`."""

    x: float
    y: float
    z: float
    unit: str = "nanometer"

    @property
    def xyz(self) -> list[float]:
        return [self.x, self.y, self.z]

    @property
    def zyx(self) -> list[float]:
        return [self.z, self.y, self.x]

    def in_nanometers(self) -> list[float]:
        """[x, y, z] in nanometres (what Neuroglancer's precomputed `info` takes)."""
        factor = UNITS[self.unit][0]
        return [tidy(v * factor) for v in self.xyz]

    def metadata(self) -> dict[str, list[float] | str]:
        """The application metadata keys that record this size in a volume."""
        return {METADATA_SIZE: self.xyz, METADATA_UNIT: self.unit}


def tidy(value: float) -> float | int:
    """A float as an int when it is whole (1800.0 -> 1800), rounded off binary noise."""
    value = round(value, 9)
    return int(value) if float(value).is_integer() else value


def unit_name(text: str) -> str:
    """The UDUNITS-2 name of a unit as a user may type it ('um' -> 'micrometer')."""
    name = SPELLINGS.get(text.strip().lower())
    if name is None:
        raise OptionError(f"unknown length unit {text!r}: use one of "
                          f"{', '.join(sorted(UNITS))} (or nm, um, mm)")
    return name


def parse(text: str, unit: str | None = None) -> VoxelSize:
    """'1.8,1.8,2.0um', or '1.8,1.8,2.0' with unit (default nanometre) -> VoxelSize."""
    match = re.fullmatch(r"\s*([^a-zA-Zµå]*?)\s*([a-zA-Zµå]*)\s*", text)
    numbers, suffix = match.groups() if match else (text, "")
    if suffix and unit and unit_name(suffix) != unit_name(unit):
        raise OptionError(f"--voxel-size {text!r} says {suffix}, --unit says {unit}")
    try:
        sizes = [float(v) for v in numbers.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) != 3 or not all(0 < v < float("inf") for v in sizes):
        raise OptionError(f"--voxel-size {text!r}: expected three positive numbers x,y,z "
                          f"with an optional unit, e.g. 1.8,1.8,2.0um")
    x, y, z = (tidy(v) for v in sizes)
    return VoxelSize(x, y, z, unit=unit_name(suffix or unit or "nanometer"))


def from_metadata(metadata: Mapping[str, Any]) -> VoxelSize | None:
    """The voxel size a volume's application metadata records, or None if it has none (or
    none that reads as three positive numbers)."""
    sizes = metadata.get(METADATA_SIZE)
    try:
        x, y, z = (float(v) for v in sizes)  # type: ignore[union-attr]  # None: TypeError
        unit = unit_name(str(metadata.get(METADATA_UNIT, LEGACY_UNIT)))
    except (TypeError, ValueError):
        return None
    if min(x, y, z) <= 0:
        return None
    return VoxelSize(tidy(x), tidy(y), tidy(z), unit)
