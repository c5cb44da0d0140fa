"""``geodesic``: distance and bearings between two points on the WGS84 ellipsoid (Karney's algorithm)."""

from __future__ import annotations

from typing import Any

from .registry import Tool, register


def geodesic(lat1: float, lon1: float, lat2: float, lon2: float) -> dict[str, Any]:
    from geographiclib.geodesic import Geodesic

    line = Geodesic.WGS84.Inverse(lat1, lon1, lat2, lon2)
    return {
        "distance_m": round(line["s12"], 3),
        "distance_km": round(line["s12"] / 1000, 6),
        "initial_bearing_deg": round(line["azi1"] % 360, 6),
        "final_bearing_deg": round(line["azi2"] % 360, 6),
        "ellipsoid": "WGS84 (a = 6378137 m, f = 1/298.257223563)",
    }


_LAT = {"type": "number", "minimum": -90, "maximum": 90}
_LON = {"type": "number", "minimum": -180, "maximum": 360}
register(
    Tool(
        name="geodesic",
        description="Distance (m, km) and initial/final bearing (degrees from north) between two latitude/"
        "longitude points on the WGS84 ellipsoid.",
        parameters={
            "type": "object",
            "properties": {
                "lat1": {**_LAT, "description": "Latitude of the first point, degrees"},
                "lon1": {**_LON, "description": "Longitude of the first point, degrees"},
                "lat2": {**_LAT, "description": "Latitude of the second point, degrees"},
                "lon2": {**_LON, "description": "Longitude of the second point, degrees"},
            },
            "required": ["lat1", "lon1", "lat2", "lon2"],
            "additionalProperties": False,
        },
        function=geodesic,
        sources=("Karney (2013), Algorithms for geodesics, J. Geodesy 87, 43-55; the geographiclib package",),
    )
)
