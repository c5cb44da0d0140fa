"""The subjects of MMLU, CMMLU and C-Eval: key -> {"name", "category"}, as LLaMA-Factory's evaluation layout's
mapping.json has them, so that the hub datasets (one config per subject) give the same subject names, categories
and question order (subjects in this order, ids running over them) as the archives.

Sources (public): the subject keys are the hub datasets' config names (cais/mmlu, haonan-li/cmmlu, ceval/ceval-exam,
the ones lm-evaluation-harness's mmlu, cmmlu and ceval-valid tasks name); the Chinese names are those the CMMLU and
C-Eval authors publish (CMMLU's ``name_en2zh``, C-Eval's ``subject_mapping.json``; the harness's prompts use the same);
an MMLU subject's name is its key with spaces. Categories are the benchmarks' own four: MMLU's (hendrycks/test
``categories.py``: STEM, humanities, social sciences, other), C-Eval's (its ``subject_mapping.json``), and CMMLU's
with its China-specific subjects each in one of the four, as LLaMA-Factory's ``evaluation/cmmlu/mapping.json``. The
order is that of LLaMA-Factory's mapping.json: alphabetical for MMLU and C-Eval, CMMLU's own listing for CMMLU.
"""

from __future__ import annotations

from typing import Any


_CATEGORY = {"STEM": "STEM", "Soc": "Social Sciences", "Hum": "Humanities", "Other": "Other"}

# key category
_MMLU = """
abstract_algebra                    STEM
anatomy                             Other
astronomy                           STEM
business_ethics                     Other
clinical_knowledge                  Other
college_biology                     STEM
college_chemistry                   STEM
college_computer_science            STEM
college_mathematics                 STEM
college_medicine                    Other
college_physics                     STEM
computer_security                   STEM
conceptual_physics                  STEM
econometrics                        Soc
electrical_engineering              STEM
elementary_mathematics              STEM
formal_logic                        Hum
global_facts                        Other
high_school_biology                 STEM
high_school_chemistry               STEM
high_school_computer_science        STEM
high_school_european_history        Hum
high_school_geography               Soc
high_school_government_and_politics Soc
high_school_macroeconomics          Soc
high_school_mathematics             STEM
high_school_microeconomics          Soc
high_school_physics                 STEM
high_school_psychology              Soc
high_school_statistics              STEM
high_school_us_history              Hum
high_school_world_history           Hum
human_aging                         Other
human_sexuality                     Soc
international_law                   Hum
jurisprudence                       Hum
logical_fallacies                   Hum
machine_learning                    STEM
management                          Other
marketing                           Other
medical_genetics                    Other
miscellaneous                       Other
moral_disputes                      Hum
moral_scenarios                     Hum
nutrition                           Other
philosophy                          Hum
prehistory                          Hum
professional_accounting             Other
professional_law                    Hum
professional_medicine               Other
professional_psychology             Soc
public_relations                    Soc
security_studies                    Soc
sociology                           Soc
us_foreign_policy                   Soc
virology                            Other
world_religions                     Hum
"""

# key category name
_CMMLU = """
agronomy                              Other 农学
anatomy                               STEM  解剖学
ancient_chinese                       Soc   古汉语
arts                                  Hum   艺术学
astronomy                             STEM  天文学
business_ethics                       Soc   商业伦理
chinese_civil_service_exam            Soc   中国公务员考试
chinese_driving_rule                  Other 中国驾驶规则
chinese_food_culture                  Soc   中国饮食文化
chinese_foreign_policy                Soc   中国外交政策
chinese_history                       Hum   中国历史
chinese_literature                    Hum   中国文学
chinese_teacher_qualification         Soc   中国教师资格
college_actuarial_science             STEM  大学精算学
college_education                     Soc   大学教育学
college_engineering_hydrology         STEM  大学工程水文学
college_law                           Hum   大学法律
college_mathematics                   STEM  大学数学
college_medical_statistics            STEM  大学医学统计
clinical_knowledge                    Other 临床知识
college_medicine                      Other 大学医学
computer_science                      STEM  计算机科学
computer_security                     Other 计算机安全
conceptual_physics                    STEM  概念物理学
construction_project_management       Other 建设工程管理
economics                             Soc   经济学
education                             Soc   教育学
elementary_chinese                    Soc   小学语文
elementary_commonsense                Other 小学常识
elementary_information_and_technology Other 小学信息技术
electrical_engineering                STEM  电气工程
elementary_mathematics                STEM  初等数学
ethnology                             Soc   民族学
food_science                          Other 食品科学
genetics                              STEM  遗传学
global_facts                          Hum   全球事实
high_school_biology                   STEM  高中生物
high_school_chemistry                 STEM  高中化学
high_school_geography                 Soc   高中地理
high_school_mathematics               STEM  高中数学
high_school_physics                   STEM  高中物理学
high_school_politics                  Soc   高中政治
human_sexuality                       Other 人类性行为
international_law                     Hum   国际法学
journalism                            Soc   新闻学
jurisprudence                         Hum   法理学
legal_and_moral_basis                 Other 法律与道德基础
logical                               Hum   逻辑学
machine_learning                      STEM  机器学习
management                            Soc   管理学
marketing                             Soc   市场营销
marxist_theory                        Hum   马克思主义理论
modern_chinese                        Soc   现代汉语
nutrition                             Other 营养学
philosophy                            Hum   哲学
professional_accounting               Soc   专业会计
professional_law                      Hum   专业法学
professional_medicine                 Other 专业医学
professional_psychology               Soc   专业心理学
public_relations                      Soc   公共关系
security_study                        Soc   安全研究
sociology                             Soc   社会学
sports_science                        Other 体育学
traditional_chinese_medicine          Other 中医中药
virology                              STEM  病毒学
world_history                         Hum   世界历史
world_religions                       Hum   世界宗教
"""

# key category name
_CEVAL = """
accountant                               Other 注册会计师
advanced_mathematics                     STEM  高等数学
art_studies                              Hum   艺术学
basic_medicine                           Other 基础医学
business_administration                  Soc   工商管理
chinese_language_and_literature          Hum   中国语言文学
civil_servant                            Other 公务员
clinical_medicine                        Other 临床医学
college_chemistry                        STEM  大学化学
college_economics                        Soc   大学经济学
college_physics                          STEM  大学物理
college_programming                      STEM  大学编程
computer_architecture                    STEM  计算机组成
computer_network                         STEM  计算机网络
discrete_mathematics                     STEM  离散数学
education_science                        Soc   教育学
electrical_engineer                      STEM  注册电气工程师
environmental_impact_assessment_engineer Other 环境影响评价工程师
fire_engineer                            Other 注册消防工程师
high_school_biology                      STEM  高中生物
high_school_chemistry                    STEM  高中化学
high_school_chinese                      Hum   高中语文
high_school_geography                    Soc   高中地理
high_school_history                      Hum   高中历史
high_school_mathematics                  STEM  高中数学
high_school_physics                      STEM  高中物理
high_school_politics                     Soc   高中政治
ideological_and_moral_cultivation        Hum   思想道德修养与法律基础
law                                      Hum   法学
legal_professional                       Hum   法律职业资格
logic                                    Hum   逻辑学
mao_zedong_thought                       Soc   毛泽东思想和中国特色社会主义理论体系概论
marxism                                  Soc   马克思主义基本原理
metrology_engineer                       STEM  注册计量师
middle_school_biology                    STEM  初中生物
middle_school_chemistry                  STEM  初中化学
middle_school_geography                  Soc   初中地理
middle_school_history                    Hum   初中历史
middle_school_mathematics                STEM  初中数学
middle_school_physics                    STEM  初中物理
middle_school_politics                   Soc   初中政治
modern_chinese_history                   Hum   近代史纲要
operating_system                         STEM  操作系统
physician                                Other 医师资格
plant_protection                         Other 植物保护
probability_and_statistics               STEM  概率统计
professional_tour_guide                  Hum   导游资格
sports_science                           Other 体育学
tax_accountant                           Other 税务师
teacher_qualification                    Soc   教师资格
urban_and_rural_planner                  Other 注册城乡规划师
veterinary_medicine                      STEM  兽医学
"""


def _table(text: str) -> dict[str, dict[str, Any]]:
    table = {}
    for line in text.strip().splitlines():
        key, category, *name = line.split()
        table[key] = {"name": name[0] if name else key.replace("_", " "), "category": _CATEGORY[category]}
    return table


# by the benchmark's folder in the evaluation layout (mmlu/, cmmlu/, ceval/)
SUBJECTS: dict[str, dict[str, dict[str, Any]]] = {
    "mmlu": _table(_MMLU),
    "cmmlu": _table(_CMMLU),
    "ceval": _table(_CEVAL),
}
