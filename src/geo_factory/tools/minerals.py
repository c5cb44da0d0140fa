"""``mineral``: the common rock-forming and ore minerals, English and Chinese names.

The table is written for geo-factory from the standard references: C. Klein & B. Dutrow, *Manual of Mineral
Science*, 23rd ed. (Wiley, 2007), and J.W. Anthony et al., *Handbook of Mineralogy* (Mineralogical Society of
America, handbookofmineralogy.org). Densities are measured values in g/cm³ (a range for solid solutions).
"""

from __future__ import annotations

import difflib
from typing import Any

from .registry import Tool, register


# English | Chinese | formula | crystal system | Mohs hardness | density g/cm³ | kind | common occurrence
TABLE = """
quartz|石英|SiO2|trigonal|7|2.65|silicate (framework)|granite, sandstone, veins; the commonest mineral of the continental crust
orthoclase|正长石|KAlSi3O8|monoclinic|6|2.55-2.63|silicate (feldspar)|granite, syenite, arkose
albite|钠长石|NaAlSi3O8|triclinic|6-6.5|2.60-2.65|silicate (plagioclase)|granite, pegmatite, low-grade metamorphic rocks
anorthite|钙长石|CaAl2Si2O8|triclinic|6-6.5|2.72-2.76|silicate (plagioclase)|basalt, gabbro, anorthosite
muscovite|白云母|KAl2(AlSi3O10)(OH)2|monoclinic|2-2.5|2.76-2.88|silicate (mica)|granite, pegmatite, schist
biotite|黑云母|K(Mg,Fe)3(AlSi3O10)(OH)2|monoclinic|2.5-3|2.7-3.3|silicate (mica)|granite, diorite, schist, gneiss
olivine|橄榄石|(Mg,Fe)2SiO4|orthorhombic|6.5-7|3.27-4.39|silicate (nesosilicate)|basalt, gabbro, peridotite of the upper mantle
augite|普通辉石|(Ca,Na)(Mg,Fe,Al,Ti)(Si,Al)2O6|monoclinic|5.5-6|3.19-3.56|silicate (pyroxene)|basalt, gabbro, andesite
hornblende|普通角闪石|Ca2(Mg,Fe,Al)5(Al,Si)8O22(OH)2|monoclinic|5-6|3.0-3.4|silicate (amphibole)|andesite, diorite, amphibolite
almandine|铁铝榴石|Fe3Al2(SiO4)3|cubic|7-7.5|4.32|silicate (garnet)|mica schist, gneiss
kaolinite|高岭石|Al2Si2O5(OH)4|triclinic|2-2.5|2.6|silicate (clay)|weathered feldspar, soils, kaolin deposits
talc|滑石|Mg3Si4O10(OH)2|triclinic|1|2.58-2.83|silicate (sheet)|altered ultramafic rocks, metamorphosed dolomite
topaz|黄玉|Al2SiO4(F,OH)2|orthorhombic|8|3.49-3.57|silicate (nesosilicate)|granite pegmatite, greisen
calcite|方解石|CaCO3|trigonal|3|2.71|carbonate|limestone, marble, carbonatite, veins
dolomite|白云石|CaMg(CO3)2|trigonal|3.5-4|2.84-2.86|carbonate|dolostone, hydrothermal veins
gypsum|石膏|CaSO4·2H2O|monoclinic|2|2.31-2.33|sulfate|evaporites
barite|重晶石|BaSO4|orthorhombic|3-3.5|4.3-4.5|sulfate|hydrothermal veins, sedimentary deposits
halite|石盐|NaCl|cubic|2.5|2.17|halide|evaporites, salt domes
fluorite|萤石|CaF2|cubic|4|3.18|halide|hydrothermal veins, greisen
apatite|磷灰石|Ca5(PO4)3(F,Cl,OH)|hexagonal|5|3.1-3.2|phosphate|accessory in most igneous rocks; phosphorite
corundum|刚玉|Al2O3|trigonal|9|3.98-4.10|oxide|metamorphosed Al-rich rocks, syenite pegmatite, placers
magnetite|磁铁矿|Fe3O4|cubic|5.5-6.5|5.17-5.18|oxide|accessory in igneous rocks, banded iron formations, skarns
hematite|赤铁矿|Fe2O3|trigonal|5-6|5.26|oxide|banded iron formations, red beds, weathered iron ores
chromite|铬铁矿|FeCr2O4|cubic|5.5|4.5-4.8|oxide|peridotite, layered mafic intrusions, podiform ophiolite ores
cassiterite|锡石|SnO2|tetragonal|6-7|6.8-7.1|oxide|granite-related veins and greisen, placers
pyrite|黄铁矿|FeS2|cubic|6-6.5|5.0|sulfide|almost every rock type; hydrothermal veins, black shale
chalcopyrite|黄铜矿|CuFeS2|tetragonal|3.5-4|4.1-4.3|sulfide|porphyry copper and VMS deposits, veins
galena|方铅矿|PbS|cubic|2.5-2.75|7.4-7.6|sulfide|Mississippi Valley-type and vein lead-zinc deposits
sphalerite|闪锌矿|ZnS|cubic|3.5-4|3.9-4.1|sulfide|Mississippi Valley-type, SEDEX and VMS zinc deposits
diamond|金刚石|C|cubic|10|3.51|native element|kimberlite and lamproite pipes, placers
graphite|石墨|C|hexagonal|1-2|2.09-2.23|native element|metamorphosed organic-rich sediments, marble
"""


def _range(text: str) -> list[float]:
    return [float(part) for part in text.split("-")]


def _minerals() -> dict[str, dict[str, Any]]:
    table = {}
    for line in TABLE.strip().splitlines():
        name, name_zh, formula, system, mohs, density, kind, occurrence = line.split("|")
        table[name] = {
            "name": name,
            "name_zh": name_zh,
            "formula": formula,
            "crystal_system": system,
            "mohs_hardness": _range(mohs),
            "density_g_cm3": _range(density),
            "kind": kind,
            "occurrence": occurrence,
        }
    return table


MINERALS = _minerals()


def mineral(name: str) -> dict[str, Any]:
    wanted = name.strip().lower()
    for row in MINERALS.values():
        if wanted in (row["name"], row["name_zh"]):
            return row
    names = [*MINERALS, *(row["name_zh"] for row in MINERALS.values())]
    close = difflib.get_close_matches(wanted, names, n=3)
    hint = f"; did you mean: {', '.join(close)}" if close else f"; known: {', '.join(MINERALS)}"
    raise ValueError(f"no mineral `{name}` in the table{hint}.")


register(
    Tool(
        name="mineral",
        description="Formula, crystal system, Mohs hardness, density (g/cm^3) and common occurrence of a common "
        "rock-forming or ore mineral, by English or Chinese name.",
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 64, "description": "e.g. quartz or 石英"}
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        function=mineral,
        sources=(
            "Klein & Dutrow (2007), Manual of Mineral Science, 23rd ed., Wiley",
            "Anthony, Bideaux, Bladh & Nichols, Handbook of Mineralogy, Mineralogical Society of America",
        ),
    )
)
