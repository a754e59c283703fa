"""The built-in configs (YAML package data; see :func:`equignnmd.config.resolve_config`)."""
