"""Build ``data/geo_tools_sft.json``: tool-use instruction data (sharegpt with a ``tools`` column), en + zh.

Every observation is computed by the real tool (:func:`geo_factory.tools.observation`) and every number in an
answer is read from that result, never typed by hand. Rows: one call, two calls, and questions that need no tool
(the bundled GeoSignal-style demo instructions). The questions are drawn from templates with a fixed seed, so the
file is reproducible: ``python -m geo_factory.tools.make_sft [OUTPUT] [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..datasets import registry_dir
from . import TOOLS, call_tool, observation


Row = dict[str, Any]
PLACES = [
    ("Beijing", "北京", 39.9042, 116.4074),
    ("Shanghai", "上海", 31.2304, 121.4737),
    ("Lhasa", "拉萨", 29.6525, 91.1721),
    ("Urumqi", "乌鲁木齐", 43.8256, 87.6168),
    ("Tokyo", "东京", 35.6762, 139.6503),
    ("London", "伦敦", 51.5072, -0.1276),
    ("New York", "纽约", 40.7128, -74.0060),
    ("Sydney", "悉尼", -33.8688, 151.2093),
    ("Nairobi", "内罗毕", -1.2921, 36.8219),
    ("Reykjavik", "雷克雅未克", 64.1466, -21.9426),
    ("Lima", "利马", -12.0464, -77.0428),
    ("Kathmandu", "加德满都", 27.7172, 85.3240),
]
CONVERSIONS = [
    ("kbar", "MPa", "千巴", "兆帕", (0.5, 40)),
    ("GPa", "kbar", "吉帕", "千巴", (0.1, 25)),
    ("psi", "MPa", "磅力每平方英寸", "兆帕", (500, 20000)),
    ("ft", "m", "英尺", "米", (100, 30000)),
    ("mi", "km", "英里", "千米", (1, 3000)),
    ("degC", "degF", "摄氏度", "华氏度", (-40, 1300)),
    ("degC", "K", "摄氏度", "开尔文", (0, 1500)),
    ("g/cm^3", "kg/m^3", "克每立方厘米", "千克每立方米", (1.0, 5.5)),
    ("HFU", "mW/m^2", "热流单位", "毫瓦每平方米", (0.5, 3.0)),
    ("Ma", "year", "百万年", "年", (0.01, 600)),
    ("Ga", "Ma", "十亿年", "百万年", (0.5, 4.5)),
    ("ka", "year", "千年", "年", (1, 800)),
    ("Ma", "Ga", "百万年", "十亿年", (10, 4000)),
    ("m", "ft", "米", "英尺", (10, 9000)),
    ("MPa", "bar", "兆帕", "巴", (1, 500)),
    ("kbar", "GPa", "千巴", "吉帕", (1, 100)),
    ("degF", "degC", "华氏度", "摄氏度", (0, 2000)),
]
SEARCH_TOPICS = [
    ("plagioclase twinning", "斜长石双晶"),
    ("subduction zone earthquakes", "俯冲带地震"),
    ("Bowen's reaction series", "鲍文反应系列"),
    ("karst landforms", "喀斯特地貌"),
    ("metamorphic facies", "变质相"),
    ("sedimentary basins", "沉积盆地"),
    ("mantle plumes", "地幔柱"),
    ("river deltas", "河流三角洲"),
    ("glacial erosion", "冰川侵蚀"),
    ("ophiolites", "蛇绿岩"),
    ("porphyry copper deposits", "斑岩铜矿"),
    ("loess", "黄土"),
    ("magnetic reversals", "地磁倒转"),
    ("fault gouge", "断层泥"),
    ("permafrost", "多年冻土"),
    ("coral reefs", "珊瑚礁"),
    ("volcanic ash", "火山灰"),
    ("groundwater aquifers", "含水层"),
    ("seismic tomography", "地震层析成像"),
    ("banded iron formations", "条带状铁建造"),
]


def _num(x: float) -> str:
    return f"{x:.6g}"


def _one_call(name: str, arguments: dict[str, Any], question: str, answer: Callable[[dict], str]) -> Row:
    result = call_tool(name, arguments)
    return {
        "conversations": [
            {"from": "human", "value": question},
            {"from": "function_call", "value": json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)},
            {"from": "observation", "value": observation(name, arguments)},
            {"from": "gpt", "value": answer(result)},
        ]
    }


def _geologic_time(rng: random.Random, zh: bool) -> Row:
    from .geotime import units

    if rng.random() < 0.5:
        unit = rng.choice(list(units().values()))
        name = unit["name_zh"] if zh else unit["name"]
        question = rng.choice(
            [
                f"{name}是什么时候开始和结束的？",
                f"{name}距今多少百万年？",
                f"{name}的起止年代是多少？",
                f"{name}开始于什么时候？",
            ]
            if zh
            else [
                f"When did the {name} begin and end?",
                f"How old is the {name}, in Ma?",
                f"What are the ages of the {name}?",
                f"When did the {name} start?",
                f"Give the time span of the {name}.",
                f"How long ago did the {name} end?",
            ]
        )

        def answer(r: dict) -> str:
            u = r["unit"]
            if zh:
                return f"{u['name_zh']}（{u['name']}，{_rank_zh(u['rank'])}）始于 {u['start_ma']:g} Ma，止于 {u['end_ma']:g} Ma（ICS 年代地层表）。"
            return f"The {u['name']} ({u['rank']}) spans {u['start_ma']:g} to {u['end_ma']:g} Ma on the ICS chart."

        return _one_call("geologic_time", {"name": name}, question, answer)
    age = round(rng.uniform(0.5, 540) if rng.random() < 0.8 else rng.uniform(540, 4000), 1)
    question = rng.choice(
        [f"距今 {age:g} 百万年属于哪个地质年代？", f"{age:g} Ma 前地球处于哪个纪？"]
        if zh
        else [
            f"Which geologic period was {age:g} Ma?",
            f"What period and epoch does an age of {age:g} Ma fall in?",
            f"Which era does a rock dated at {age:g} Ma belong to?",
            f"What was the geologic time {age:g} million years ago?",
        ]
    )

    def answer(r: dict) -> str:
        names = [(u["name_zh"] if zh else u["name"]) for u in r["units"]]
        return f"{age:g} Ma 属于：{'、'.join(names)}。" if zh else f"{age:g} Ma falls in: {', '.join(names)}."

    return _one_call("geologic_time", {"age_ma": age}, question, answer)


def _rank_zh(rank: str) -> str:
    return {"eon": "宙", "era": "代", "period": "纪", "epoch": "世", "age": "期"}[rank]


def _earthquake(rng: random.Random, zh: bool) -> Row:
    if rng.random() < 0.6:
        mw = round(rng.uniform(3.0, 9.5), 1)
        args = {"magnitude": mw}
        question = rng.choice(
            [f"矩震级 {mw:g} 的地震，地震矩和辐射能量是多少？", f"{mw:g} 级地震释放多少能量？"]
            if zh
            else [
                f"What is the seismic moment of a Mw {mw:g} earthquake?",
                f"How much energy does a magnitude {mw:g} quake radiate?",
                f"An earthquake of moment magnitude {mw:g}: what are its moment and energy?",
            ]
        )
    else:
        m0 = float(f"{10 ** rng.uniform(15, 23):.2e}")
        args = {"moment_nm": m0}
        question = rng.choice(
            [f"地震矩为 {m0:g} N·m 的地震，矩震级是多少？"]
            if zh
            else [
                f"What moment magnitude corresponds to a seismic moment of {m0:g} N·m?",
                f"A fault slip released a seismic moment of {m0:g} N·m. What is the Mw?",
            ]
        )

    def answer(r: dict) -> str:
        if zh:
            return f"矩震级 Mw {r['moment_magnitude']:.2f}，地震矩 {_num(r['seismic_moment_nm'])} N·m，辐射能量约 {_num(r['radiated_energy_j'])} J（Hanks & Kanamori 1979）。"
        return f"Mw {r['moment_magnitude']:.2f}: seismic moment {_num(r['seismic_moment_nm'])} N·m, radiated energy about {_num(r['radiated_energy_j'])} J (Hanks & Kanamori 1979)."

    return _one_call("earthquake_energy", args, question, answer)


def _convert(rng: random.Random, zh: bool) -> Row:
    src, dst, src_zh, dst_zh, (low, high) = rng.choice(CONVERSIONS)
    value = float(f"{rng.uniform(low, high):.3g}")
    args = {"value": value, "from_unit": src, "to_unit": dst}
    question = rng.choice(
        [f"{value:g} {src_zh}等于多少{dst_zh}？", f"把 {value:g} {src} 换算成 {dst}。"]
        if zh
        else [
            f"Convert {value:g} {src} to {dst}.",
            f"How many {dst} is {value:g} {src}?",
            f"What is {value:g} {src} in {dst}?",
            f"Express {value:g} {src} in {dst}.",
        ]
    )
    return _one_call(
        "unit_convert",
        args,
        question,
        lambda r: (
            f"{value:g} {src} = {_num(r['value'])} {dst}。" if zh else f"{value:g} {src} is {_num(r['value'])} {dst}."
        ),
    )


def _lithostatic(rng: random.Random, zh: bool) -> Row:
    depth = rng.choice([500, 1000, 2000, 3000, 5000, 8000, 10000, 15000, 20000, 30000])
    if rng.random() < 0.5:
        density = rng.choice([2300, 2500, 2650, 2700, 2800, 2900, 3000, 3300])
        args = {"depth_m": depth, "density_kg_m3": density}
        question = rng.choice(
            [
                f"密度为 {density} kg/m³ 的岩石中，{depth} 米深处的静岩压力是多少？",
                f"{depth} 米深、岩石密度 {density} kg/m³，上覆压力多大？",
            ]
            if zh
            else [
                f"What is the lithostatic pressure at {depth} m depth in rock of density {density} kg/m³?",
                f"Rock of density {density} kg/m³: what is the overburden pressure at {depth} m?",
            ]
        )

        def answer(r: dict) -> str:
            return (
                f"约 {r['pressure_mpa']:.1f} MPa（P = ρgh）。"
                if zh
                else f"About {r['pressure_mpa']:.1f} MPa (P = ρgh)."
            )
    else:
        gradient, surface = rng.choice([15, 20, 25, 30, 35, 50]), rng.choice([0, 10, 15, 20])
        args = {"depth_m": depth, "surface_temperature_c": surface, "geothermal_gradient_c_per_km": gradient}
        question = rng.choice(
            [f"地表温度 {surface}°C、地温梯度 {gradient}°C/km，{depth} 米深处温度是多少？"]
            if zh
            else [
                f"With a surface temperature of {surface} °C and a geothermal gradient of {gradient} °C/km, how hot is it at {depth} m?",
                f"What is the temperature {depth} m down, given {surface} °C at the surface and {gradient} °C/km?",
            ]
        )

        def answer(r: dict) -> str:
            return f"约 {r['temperature_c']:g}°C。" if zh else f"About {r['temperature_c']:g} °C."

    return _one_call("lithostatic", args, question, answer)


def _geodesic(rng: random.Random, zh: bool) -> Row:
    a, b = rng.sample(PLACES, 2)
    args = {"lat1": a[2], "lon1": a[3], "lat2": b[2], "lon2": b[3]}
    pa, pb = f"({a[2]}, {a[3]})", f"({b[2]}, {b[3]})"
    question = rng.choice(
        [f"{a[1]}到{b[1]}的大地线距离是多少？", f"{a[1]} {pa} 与{b[1]} {pb} 相距多远？"]
        if zh
        else [
            f"How far is {a[0]} from {b[0]}?",
            f"What is the distance and bearing from {a[0]} to {b[0]}?",
            f"Distance between {a[0]} {pa} and {b[0]} {pb}?",
        ]
    )

    def answer(r: dict) -> str:
        if zh:
            return f"{a[1]}到{b[1]}约 {r['distance_km']:.1f} km，初始方位角 {r['initial_bearing_deg']:.1f}°（WGS84）。"
        return (
            f"{a[0]} to {b[0]}: {r['distance_km']:.1f} km on WGS84, initial bearing {r['initial_bearing_deg']:.1f}°."
        )

    return _one_call("geodesic", args, question, answer)


def _mineral(rng: random.Random, zh: bool) -> Row:
    from .minerals import MINERALS

    row = rng.choice(list(MINERALS.values()))
    name = row["name_zh"] if zh else row["name"]
    question = rng.choice(
        [f"{name}的化学式和硬度是多少？", f"{name}的密度是多少？", f"{name}的莫氏硬度是多少？"]
        if zh
        else [
            f"What is the formula and hardness of {name}?",
            f"What is the density of {name}?",
            f"Tell me about {name}.",
            f"What is the Mohs hardness of {name}?",
            f"Which crystal system does {name} have?",
        ]
    )

    def answer(r: dict) -> str:
        hardness = "-".join(f"{h:g}" for h in r["mohs_hardness"])
        density = "-".join(f"{d:g}" for d in r["density_g_cm3"])
        if zh:
            return f"{r['name_zh']}：化学式 {r['formula']}，{r['crystal_system']} 晶系，莫氏硬度 {hardness}，密度 {density} g/cm³。"
        return f"{r['name'].capitalize()}: {r['formula']}, {r['crystal_system']}, Mohs hardness {hardness}, density {density} g/cm³."

    return _one_call("mineral", {"name": name}, question, answer)


def _search(rng: random.Random, zh: bool) -> Row:
    topic_en, topic_zh = rng.choice(SEARCH_TOPICS)
    topic = topic_zh if zh else topic_en
    question = rng.choice(
        [f"在语料库中查找关于{topic}的段落。", f"语料库里有哪些关于{topic}的内容？"]
        if zh
        else [
            f"Find a passage about {topic} in the corpus and cite it.",
            f"Search the corpus for {topic}.",
            f"What does the corpus say about {topic}?",
        ]
    )

    def answer(r: dict) -> str:
        if not r["hits"]:
            return "语料库中没有找到相关段落。" if zh else "The corpus has no passage on that."
        hit = r["hits"][0]
        return (
            f"最相关的段落是 [{hit['id']}]：{hit['passage']}"
            if zh
            else f"The best passage is [{hit['id']}]: {hit['passage']}"
        )

    return _one_call("corpus_search", {"query": topic}, question, answer)


def _two_calls(rng: random.Random, zh: bool) -> Row:
    """Two earthquakes compared: two calls before the answer."""
    m1, m2 = sorted(rng.sample([4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0], 2))
    question = (
        f"矩震级 {m2:g} 的地震释放的能量是 {m1:g} 级地震的多少倍？"
        if zh
        else f"How many times more energy does a Mw {m2:g} earthquake radiate than a Mw {m1:g} one?"
    )
    turns = [{"from": "human", "value": question}]
    energies = []
    for mw in (m1, m2):
        args = {"magnitude": mw}
        turns.append({"from": "function_call", "value": json.dumps({"name": "earthquake_energy", "arguments": args})})
        turns.append({"from": "observation", "value": observation("earthquake_energy", args)})
        energies.append(call_tool("earthquake_energy", args)["radiated_energy_j"])
    ratio = energies[1] / energies[0]
    answer = (
        f"约 {ratio:.0f} 倍（{_num(energies[1])} J 对 {_num(energies[0])} J）。"
        if zh
        else f"About {ratio:.0f} times ({_num(energies[1])} J vs {_num(energies[0])} J)."
    )
    turns.append({"from": "gpt", "value": answer})
    return {"conversations": turns}


def _no_tool(rows: list[dict[str, str]], rng: random.Random) -> Row:
    row = rng.choice(rows)
    question = row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": row["output"]}]}


MAKERS = [_geologic_time, _earthquake, _convert, _lithostatic, _geodesic, _mineral, _search]


def build(n_per_tool: int = 40, n_two_calls: int = 30, n_no_tool: int = 40, seed: int = 0) -> list[Row]:
    rng = random.Random(seed)
    tools = json.dumps([tool.schema() for tool in TOOLS.values()], ensure_ascii=False)
    with open(registry_dir() / "demo" / "geosignal_demo.json", encoding="utf-8") as f:
        plain = json.load(f)
    rows = [make(rng, zh=i % 2 == 1) for make in MAKERS for i in range(n_per_tool)]
    rows += [_two_calls(rng, zh=i % 2 == 1) for i in range(n_two_calls)]
    rows += [_no_tool(plain, rng) for _ in range(n_no_tool)]
    unique = list({json.dumps(row, ensure_ascii=False): row for row in rows}.values())
    rng.shuffle(unique)
    return [{**row, "tools": tools} for row in unique]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m geo_factory.tools.make_sft", description=__doc__)
    parser.add_argument("output", nargs="?", default=str(registry_dir() / "geo_tools_sft.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = build(seed=args.seed)
    Path(args.output).write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} rows written to {args.output}")


if __name__ == "__main__":
    main()
