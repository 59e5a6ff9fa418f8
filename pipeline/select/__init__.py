"""``wit select``: candidate extraction, query matching and per-query balancing."""
