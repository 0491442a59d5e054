import my_ops  # noqa: F401  -- registers swish before the YAML cases are collected
