"""Building data: corpus cleaning (``corpus``, on the datatrove steps of ``steps``), instruction data (``sft``)
and GeoBench decontamination (``decontaminate``); they read their files with ``geo_factory.rows``."""
