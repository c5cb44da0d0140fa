"""Building data: corpus cleaning (datatrove), instruction data, and GeoBench decontamination."""
