"""The `similarity_mse` metric as a package, so its function imports directly; `evaluate.load` reads the folder."""
