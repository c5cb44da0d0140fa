"""geo-factory: geoscience LLM recipes (K2, JiuZhou, PreparedLLM) inside LLaMA-Factory.

Importing this package is cheap on purpose: ``geo_factory.pth`` imports :mod:`geo_factory.hooks`
in every Python process, and the real work is deferred until LLaMA-Factory itself is imported.
"""

__version__ = "0.1.0"
