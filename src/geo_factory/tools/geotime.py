"""``geologic_time``: units of the ICS International Chronostratigraphic Chart by name (English or Chinese) or age.

Source: K.M. Cohen, S.C. Finney, P.L. Gibbard, J.-X. Fan, *The ICS International Chronostratigraphic Chart*,
Episodes 36: 199-204 (2013; updated), chart **v2023/09** (www.stratigraphy.org), the numbers as printed there:
"~" marks a boundary without a ratified numerical age, "±" its uncertainty. Encoded: every eon, era, period
(Carboniferous sub-periods folded into its epochs' names) and epoch/series, and the ages/stages of the Cenozoic
and the Late Cretaceous. Chinese names follow the Chinese edition of the chart (全国地层委员会).
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

from .registry import Tool, register


# (rank, English, Chinese, parent, start as printed on the chart in Ma). A unit ends where the next one down the
# table at its rank and parent starts (the youngest of each parent ends where its parent ends).
CHART = """
eon|Hadean|冥古宙||4567
eon|Archean|太古宙||4031 ±3
eon|Proterozoic|元古宙||2500
eon|Phanerozoic|显生宙||538.8 ±0.2
era|Eoarchean|始太古代|Archean|4031 ±3
era|Paleoarchean|古太古代|Archean|3600
era|Mesoarchean|中太古代|Archean|3200
era|Neoarchean|新太古代|Archean|2800
era|Paleoproterozoic|古元古代|Proterozoic|2500
era|Mesoproterozoic|中元古代|Proterozoic|1600
era|Neoproterozoic|新元古代|Proterozoic|1000
era|Paleozoic|古生代|Phanerozoic|538.8 ±0.2
era|Mesozoic|中生代|Phanerozoic|251.902 ±0.024
era|Cenozoic|新生代|Phanerozoic|66.0
period|Siderian|成铁纪|Paleoproterozoic|2500
period|Rhyacian|层侵纪|Paleoproterozoic|2300
period|Orosirian|造山纪|Paleoproterozoic|2050
period|Statherian|固结纪|Paleoproterozoic|1800
period|Calymmian|盖层纪|Mesoproterozoic|1600
period|Ectasian|延展纪|Mesoproterozoic|1400
period|Stenian|狭带纪|Mesoproterozoic|1200
period|Tonian|拉伸纪|Neoproterozoic|1000
period|Cryogenian|成冰纪|Neoproterozoic|~720
period|Ediacaran|埃迪卡拉纪|Neoproterozoic|~635
period|Cambrian|寒武纪|Paleozoic|538.8 ±0.2
period|Ordovician|奥陶纪|Paleozoic|486.85 ±1.5
period|Silurian|志留纪|Paleozoic|443.1 ±0.9
period|Devonian|泥盆纪|Paleozoic|419.62 ±1.36
period|Carboniferous|石炭纪|Paleozoic|358.86 ±0.19
period|Permian|二叠纪|Paleozoic|298.9 ±0.15
period|Triassic|三叠纪|Mesozoic|251.902 ±0.024
period|Jurassic|侏罗纪|Mesozoic|201.4 ±0.2
period|Cretaceous|白垩纪|Mesozoic|~143.1
period|Paleogene|古近纪|Cenozoic|66.0
period|Neogene|新近纪|Cenozoic|23.04
period|Quaternary|第四纪|Cenozoic|2.58
epoch|Terreneuvian|纽芬兰世|Cambrian|538.8 ±0.2
epoch|Cambrian Series 2|第二世|Cambrian|~521
epoch|Miaolingian|苗岭世|Cambrian|~506.5
epoch|Furongian|芙蓉世|Cambrian|~497
epoch|Early Ordovician|早奥陶世|Ordovician|486.85 ±1.5
epoch|Middle Ordovician|中奥陶世|Ordovician|471.3 ±1.4
epoch|Late Ordovician|晚奥陶世|Ordovician|458.2 ±0.7
epoch|Llandovery|兰多维列世|Silurian|443.1 ±0.9
epoch|Wenlock|温洛克世|Silurian|432.9 ±0.7
epoch|Ludlow|罗德洛世|Silurian|426.7 ±0.9
epoch|Pridoli|普里道利世|Silurian|422.7 ±1.6
epoch|Early Devonian|早泥盆世|Devonian|419.62 ±1.36
epoch|Middle Devonian|中泥盆世|Devonian|393.47 ±0.99
epoch|Late Devonian|晚泥盆世|Devonian|382.31 ±1.36
epoch|Early Mississippian|早密西西比世|Carboniferous|358.86 ±0.19
epoch|Middle Mississippian|中密西西比世|Carboniferous|346.7 ±0.4
epoch|Late Mississippian|晚密西西比世|Carboniferous|330.3 ±0.4
epoch|Early Pennsylvanian|早宾夕法尼亚世|Carboniferous|323.4 ±0.4
epoch|Middle Pennsylvanian|中宾夕法尼亚世|Carboniferous|315.2 ±0.2
epoch|Late Pennsylvanian|晚宾夕法尼亚世|Carboniferous|307.0 ±0.1
epoch|Cisuralian|乌拉尔世|Permian|298.9 ±0.15
epoch|Guadalupian|瓜德鲁普世|Permian|274.4 ±0.4
epoch|Lopingian|乐平世|Permian|259.51 ±0.21
epoch|Early Triassic|早三叠世|Triassic|251.902 ±0.024
epoch|Middle Triassic|中三叠世|Triassic|247.2
epoch|Late Triassic|晚三叠世|Triassic|~237
epoch|Early Jurassic|早侏罗世|Jurassic|201.4 ±0.2
epoch|Middle Jurassic|中侏罗世|Jurassic|174.7 ±0.8
epoch|Late Jurassic|晚侏罗世|Jurassic|161.5 ±1.0
epoch|Early Cretaceous|早白垩世|Cretaceous|~143.1
epoch|Late Cretaceous|晚白垩世|Cretaceous|100.5
epoch|Paleocene|古新世|Paleogene|66.0
epoch|Eocene|始新世|Paleogene|56.0
epoch|Oligocene|渐新世|Paleogene|33.9
epoch|Miocene|中新世|Neogene|23.04
epoch|Pliocene|上新世|Neogene|5.333
epoch|Pleistocene|更新世|Quaternary|2.58
epoch|Holocene|全新世|Quaternary|0.0117
age|Cenomanian|塞诺曼期|Late Cretaceous|100.5
age|Turonian|土伦期|Late Cretaceous|93.9
age|Coniacian|康尼亚克期|Late Cretaceous|89.8 ±0.3
age|Santonian|桑托期|Late Cretaceous|86.3 ±0.5
age|Campanian|坎潘期|Late Cretaceous|83.6 ±0.2
age|Maastrichtian|马斯特里赫特期|Late Cretaceous|72.1 ±0.2
age|Danian|丹麦期|Paleocene|66.0
age|Selandian|塞兰特期|Paleocene|61.6
age|Thanetian|坦尼特期|Paleocene|59.2
age|Ypresian|伊普里斯期|Eocene|56.0
age|Lutetian|卢泰特期|Eocene|47.8
age|Bartonian|巴顿期|Eocene|41.2
age|Priabonian|普利亚本期|Eocene|37.71
age|Rupelian|吕珀尔期|Oligocene|33.9
age|Chattian|夏特期|Oligocene|27.82
age|Aquitanian|阿基坦期|Miocene|23.04
age|Burdigalian|波尔多期|Miocene|20.44
age|Langhian|兰盖期|Miocene|15.98
age|Serravallian|塞拉瓦莱期|Miocene|13.82
age|Tortonian|托尔托纳期|Miocene|11.63
age|Messinian|墨西拿期|Miocene|7.246
age|Zanclean|赞克尔期|Pliocene|5.333
age|Piacenzian|皮亚琴察期|Pliocene|3.600
age|Gelasian|杰拉期|Pleistocene|2.58
age|Calabrian|卡拉布里雅期|Pleistocene|1.80
age|Chibanian|千叶期|Pleistocene|0.774
age|Late Pleistocene|晚更新期|Pleistocene|0.129
age|Greenlandian|格陵兰期|Holocene|0.0117
age|Northgrippian|诺斯格瑞比期|Holocene|0.0082
age|Meghalayan|梅加拉亚期|Holocene|0.0042
"""
CHART_VERSION = "ICS International Chronostratigraphic Chart v2023/09"
RANKS = ("eon", "era", "period", "epoch", "age")


def _boundary(text: str) -> tuple[float, float | None, bool]:
    """'251.902 ±0.024' -> (251.902, 0.024, False); '~143.1' -> (143.1, None, True); '66.0' -> (66.0, None, False)."""
    approximate = text.startswith("~")
    value, _, uncertainty = text.lstrip("~").partition("±")
    return float(value), float(uncertainty) if uncertainty else None, approximate


@cache
def units() -> dict[str, dict[str, Any]]:
    rows = [line.split("|") for line in CHART.strip().splitlines()]
    table: dict[str, dict[str, Any]] = {}
    for rank, name, name_zh, parent, start in rows:
        value, uncertainty, approximate = _boundary(start)
        table[name] = {
            "name": name,
            "name_zh": name_zh,
            "rank": rank,
            "parent": parent or None,
            "start_ma": value,
            "start_uncertainty_ma": uncertainty,
            "start_approximate": approximate,
        }
    for unit in table.values():
        siblings = [u for u in table.values() if u["rank"] == unit["rank"] and u["parent"] == unit["parent"]]
        younger = [u for u in siblings if u["start_ma"] < unit["start_ma"]]
        end = max(younger, key=lambda u: u["start_ma"]) if younger else table.get(unit["parent"] or "")
        if end is not None and younger:
            unit["end_ma"], unit["end_uncertainty_ma"] = end["start_ma"], end["start_uncertainty_ma"]
            unit["end_approximate"] = end["start_approximate"]
        elif end is not None:  # the youngest child ends with its parent
            unit["end_ma"], unit["end_uncertainty_ma"] = end.get("end_ma"), end.get("end_uncertainty_ma")
            unit["end_approximate"] = end.get("end_approximate", False)
        else:  # Phanerozoic, the youngest eon
            unit["end_ma"], unit["end_uncertainty_ma"], unit["end_approximate"] = 0.0, None, False
    # parents are resolved in table order (eons first), so every end is known; add the lineage
    for unit in table.values():
        lineage, parent = [], unit["parent"]
        while parent:
            lineage.append(parent)
            parent = table[parent]["parent"]
        unit["parents"] = lineage[::-1]
    return table


def geologic_time(name: str | None = None, age_ma: float | None = None) -> dict[str, Any]:
    if (name is None) == (age_ma is None):
        raise ValueError("give exactly one of `name` (a unit, English or Chinese) or `age_ma` (an age in Ma).")
    table = units()
    if name is not None:
        wanted = name.strip().lower()
        for unit in table.values():
            if wanted in (unit["name"].lower(), unit["name_zh"]):
                return {"unit": _public(unit), "chart": CHART_VERSION}
        close = difflib.get_close_matches(name, [*table, *(u["name_zh"] for u in table.values())], n=3)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        raise ValueError(f"no unit `{name}` in the chart{hint}.")
    if not 0 <= age_ma <= table["Hadean"]["start_ma"]:
        raise ValueError(f"age_ma must lie between 0 and {table['Hadean']['start_ma']:g} Ma, got {age_ma:g}.")
    # a boundary age belongs to the unit it is the base of (66.0 Ma: Danian, not Maastrichtian)
    found = [u for u in table.values() if u["end_ma"] < age_ma <= u["start_ma"] or (age_ma == 0 == u["end_ma"])]
    found.sort(key=lambda u: RANKS.index(u["rank"]))
    return {"age_ma": age_ma, "units": [_public(u) for u in found], "chart": CHART_VERSION}


def _public(unit: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "name_zh", "rank", "parents", "start_ma", "start_uncertainty_ma", "end_ma", "end_uncertainty_ma")
    out = {k: unit[k] for k in keys}
    if unit["start_approximate"] or unit["end_approximate"]:
        out["approximate"] = [k for k in ("start", "end") if unit[f"{k}_approximate"]]
    return out


register(
    Tool(
        name="geologic_time",
        description="Geologic time units of the ICS chart (v2023/09): a unit by English or Chinese name, or the "
        "units containing an age in Ma; rank, parent units, start and end in Ma with uncertainty.",
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Unit name, e.g. Cretaceous or 白垩纪"},
                "age_ma": {"type": "number", "minimum": 0, "description": "Age in millions of years (Ma)"},
            },
            "additionalProperties": False,
        },
        function=geologic_time,
        sources=(
            "Cohen, Finney, Gibbard & Fan (2013, updated): The ICS International Chronostratigraphic Chart, "
            "Episodes 36, 199-204; chart v2023/09, www.stratigraphy.org",
        ),
    )
)
