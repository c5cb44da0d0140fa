"""Building data: corpus cleaning (``corpus``, on the datatrove steps of ``steps``), instruction data (``sft``),
GeoBench decontamination (``decontaminate``), and the JSON/JSONL row reader they share (``rows``)."""
