"""geo-factory: geoscience LLM recipes (K2, JiuZhou, PreparedLLM) inside LLaMA-Factory.

Importing this package is cheap on purpose: ``geo_factory.pth`` imports :mod:`geo_factory.hooks`
in every Python process, and the real work is deferred until LLaMA-Factory itself is imported.

What it holds: ``hooks`` (the one place that patches LLaMA-Factory), ``hparams`` (argument dataclasses; they import
nothing above them), ``datasets`` (the dataset registry), ``tspt`` (two-stage pre-adaptation pretraining),
``vocab`` (domain vocabulary expansion), ``eval`` (GeoBench, K2's protocol, the general benchmarks and the user's
own, one loop over benchmark families), ``tools`` (geoscience tools the model calls), ``curation`` (corpus
cleaning, instruction data, decontamination), ``endpoint`` (the one OpenAI-compatible client), ``chat`` and
``webui`` (LLaMA-Factory's chat and LlamaBoard, extended), ``cli`` (``geo-factory``), ``smol`` and ``tiny`` (the
real and the tiny offline model), ``extras`` (small shared helpers).
"""

__version__ = "0.1.0"
