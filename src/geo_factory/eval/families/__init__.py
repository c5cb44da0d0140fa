"""Benchmark families: one module per kind of benchmark, each behind the protocol of :mod:`.base`.

``geobench`` (GeoBench in the K2 and JiuZhou layouts), ``k2`` (K2's own prompts and exemplar files on GeoBench's
objective tasks, ``prompt_style: k2``), ``general`` (MMLU, CMMLU, C-Eval in LLaMA-Factory's layout), ``custom``
(multiple-choice benchmarks of the user's own, registered in ``eval_info.json``), ``generated`` (the user's tasks
with generated answers, ``answer_type`` in ``eval_info.json``), and from their hub datasets ``formationeval``,
``earthse`` and ``climaqa`` (:mod:`.hub`). A new family
is a module with a ``BoundTask`` subclass and a ``bind`` function, an entry in :data:`FAMILIES` and its tasks in
``geo_factory.eval.tasks``.
"""

from . import climaqa, custom, earthse, formationeval, general, generated, geobench


# The modules that bind a registry family's tasks, in the order a run scores them (GeoBench first, as JiuZhou's
# table). K2 is bound by the GeoBench module: it is GeoBench's objective tasks under another prompt protocol.
FAMILIES = {
    "geobench": geobench,
    "general": general,
    "custom": custom,
    "answers": generated,
    "formationeval": formationeval,  # the hub benchmarks published since GeoBench (#35)
    "earthse": earthse,
    "climaqa": climaqa,
}
