"""The `overlap_at_k` metric as a package, so its function imports directly; `evaluate.load` reads the folder."""
