"""The `rank_correlation` metric as a package, so its function imports directly; `evaluate.load` reads the folder."""
