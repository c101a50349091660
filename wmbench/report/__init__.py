"""Reports: human-normalised aggregates with bootstrap intervals, tables and plots (needs the `report` extra)."""
