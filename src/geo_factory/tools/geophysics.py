"""``earthquake_energy``, ``lithostatic`` and ``unit_convert``: the conversions geoscientists do by hand."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from .registry import Tool, register


STANDARD_GRAVITY = 9.80665  # m/s², CGPM 1901
ENERGY_PER_MOMENT = 5e-5  # Es / M0, Kanamori (1977)
TNT_TON_J = 4.184e9


MIN_MW, MAX_MW = -3, 11  # the magnitudes the tool answers for: moment and energy are bounded to match


def _moment(magnitude: float) -> float:
    """Seismic moment (N·m) of a moment magnitude: M0 = 10^(1.5 Mw + 9.1)."""
    return 10 ** (1.5 * magnitude + 9.1)


def earthquake_energy(
    magnitude: float | None = None, moment_nm: float | None = None, energy_j: float | None = None
) -> dict[str, Any]:
    given = [v for v in (magnitude, moment_nm, energy_j) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of `magnitude` (Mw), `moment_nm` (N·m) or `energy_j` (J).")
    if magnitude is not None:
        moment_nm = _moment(magnitude)
    elif energy_j is not None:
        moment_nm = energy_j / ENERGY_PER_MOMENT
    magnitude = 2 / 3 * (math.log10(moment_nm) - 9.1)
    energy_j = ENERGY_PER_MOMENT * moment_nm
    return {
        "moment_magnitude": round(magnitude, 4),
        "seismic_moment_nm": float(f"{moment_nm:.6g}"),
        "radiated_energy_j": float(f"{energy_j:.6g}"),
        "tnt_equivalent_t": float(f"{energy_j / TNT_TON_J:.6g}"),
        "relations": [
            "Mw = 2/3 (log10 M0 - 9.1), M0 in N·m (Hanks & Kanamori 1979; IASPEI 2013 standard)",
            "Es = 5e-5 M0 (Kanamori 1977)",
            "1 t TNT = 4.184e9 J",
        ],
    }


def lithostatic(
    depth_m: float,
    density_kg_m3: float | None = None,
    layers: list[dict[str, float]] | None = None,
    gravity_m_s2: float = STANDARD_GRAVITY,
    surface_temperature_c: float | None = None,
    geothermal_gradient_c_per_km: float | None = None,
) -> dict[str, Any]:
    if density_kg_m3 is not None and layers is not None:
        raise ValueError("give `density_kg_m3` or `layers`, not both.")
    pressure = density_kg_m3 is not None or layers is not None
    temperature = geothermal_gradient_c_per_km is not None
    if not (pressure or temperature):
        raise ValueError(
            "give a density (`density_kg_m3` or `layers`) for pressure, or `geothermal_gradient_c_per_km`."
        )
    result: dict[str, Any] = {"depth_m": depth_m}
    if pressure:
        column = layers or [{"thickness_m": depth_m, "density_kg_m3": density_kg_m3}]
        if sum(layer["thickness_m"] for layer in column) < depth_m:
            raise ValueError("the layers are thinner in total than `depth_m`.")
        remaining, pa = depth_m, 0.0
        for layer in column:
            part = min(layer["thickness_m"], remaining)
            pa += layer["density_kg_m3"] * gravity_m_s2 * part
            remaining -= part
        result.update(pressure_pa=float(f"{pa:.6g}"), pressure_mpa=round(pa / 1e6, 4), relation="P = g Σ ρᵢ hᵢ")
    if temperature:
        surface = 0.0 if surface_temperature_c is None else surface_temperature_c
        result.update(
            temperature_c=round(surface + geothermal_gradient_c_per_km * depth_m / 1000, 4),
            temperature_relation="T = T0 + (dT/dz) z (linear geotherm)",
        )
    return result


@cache
def _units() -> Any:
    import pint

    registry = pint.UnitRegistry()
    # heat-flow unit of the older literature: 1 µcal/(cm²·s) = 41.84 mW/m²
    registry.define("heat_flow_unit = 1e-6 * calorie / centimeter ** 2 / second = HFU")
    return registry


def _parse_unit(key: str, text: str) -> Any:
    import pint

    try:
        return _units().parse_units(text)
    except pint.UndefinedUnitError as err:
        reason = str(err)
    except Exception:  # pint's own parser (no eval) raises several kinds, often with no message, on bad syntax
        reason = "not a unit expression"
    raise ValueError(f"`{key}` `{text}`: {reason}; use names like MPa, kbar, km, ft, degC, g/cm^3, mW/m^2, Ma.")


def _significant(value: float, scale: float, digits: int = 10) -> float:
    """``value`` to ``digits`` significant digits of ``scale``: an offset conversion (32 degF to degC) computes
    a small result as the difference of large terms, whose rounding error (5.7e-14) is noise, not a digit."""
    if value == 0 or not scale:
        return 0.0
    return float(f"{round(value, digits - 1 - math.floor(math.log10(scale))) + 0.0:.{digits}g}")


def unit_convert(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    import pint

    units = _units()
    source, target = _parse_unit("from_unit", from_unit), _parse_unit("to_unit", to_unit)
    try:
        converted = units.Quantity(value, source).to(target).magnitude
        offset = units.Quantity(0, source).to(target).magnitude  # nonzero for temperatures only
    except pint.DimensionalityError as err:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}: {err}") from None
    return {
        "value": _significant(converted, max(abs(converted), abs(offset))),
        "unit": to_unit,
        "from": f"{value:g} {from_unit}",
        "library": f"pint {pint.__version__}",
    }


_NUMBER = {"type": "number"}
register(
    Tool(
        name="earthquake_energy",
        description="Convert between moment magnitude Mw, seismic moment M0 (N·m) and radiated energy Es (J); "
        "give exactly one (Mw -3 to 11, or the moment or energy of that range).",
        parameters={
            "type": "object",
            "properties": {
                "magnitude": {
                    "type": "number",
                    "minimum": MIN_MW,
                    "maximum": MAX_MW,
                    "description": "Moment magnitude Mw",
                },
                "moment_nm": {
                    "type": "number",
                    "minimum": _moment(MIN_MW),
                    "maximum": _moment(MAX_MW),
                    "description": "Seismic moment in N·m",
                },
                "energy_j": {
                    "type": "number",
                    "minimum": ENERGY_PER_MOMENT * _moment(MIN_MW),
                    "maximum": ENERGY_PER_MOMENT * _moment(MAX_MW),
                    "description": "Radiated energy in J",
                },
            },
            "additionalProperties": False,
        },
        function=earthquake_energy,
        sources=(
            "Hanks & Kanamori (1979), J. Geophys. Res. 84(B5), 2348-2350",
            "Kanamori (1977), J. Geophys. Res. 82(20), 2981-2987",
        ),
    )
)
register(
    Tool(
        name="lithostatic",
        description="Lithostatic pressure at a depth from a density or a layered density column, and temperature "
        "at that depth from a surface temperature and a geothermal gradient.",
        parameters={
            "type": "object",
            "properties": {
                "depth_m": {"type": "number", "minimum": 0, "description": "Depth below the surface in m"},
                "density_kg_m3": {"type": "number", "exclusiveMinimum": 0, "description": "Rock density in kg/m³"},
                "layers": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "description": "Density column from the surface down",
                    "items": {
                        "type": "object",
                        "properties": {
                            "thickness_m": {"type": "number", "exclusiveMinimum": 0},
                            "density_kg_m3": {"type": "number", "exclusiveMinimum": 0},
                        },
                        "required": ["thickness_m", "density_kg_m3"],
                        "additionalProperties": False,
                    },
                },
                "gravity_m_s2": {"type": "number", "exclusiveMinimum": 0, "description": "Default 9.80665"},
                "surface_temperature_c": {"type": "number", "description": "Surface temperature in °C"},
                "geothermal_gradient_c_per_km": {"type": "number", "description": "Geothermal gradient in °C/km"},
            },
            "required": ["depth_m"],
            "additionalProperties": False,
        },
        function=lithostatic,
        sources=("Turcotte & Schubert (2014), Geodynamics, 3rd ed., sections 2.2 (lithostatic pressure) and 4.6",),
    )
)
register(
    Tool(
        name="unit_convert",
        description="Convert a quantity between units: pressure (MPa, kbar, psi), length/depth (km, ft), "
        "temperature (degC, degF, K), density (g/cm^3, kg/m^3), heat flow (mW/m^2, HFU), time (yr, ka, Ma, Ga).",
        parameters={
            "type": "object",
            "properties": {
                "value": {"type": "number", "description": "The number to convert"},
                "from_unit": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Unit of value"},
                "to_unit": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Target unit"},
            },
            "required": ["value", "from_unit", "to_unit"],
            "additionalProperties": False,
        },
        function=unit_convert,
        sources=("pint (https://pint.readthedocs.io), its default unit definitions; HFU = 1 µcal cm⁻² s⁻¹",),
    )
)
