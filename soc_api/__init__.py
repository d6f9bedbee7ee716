"""govsoc soc_api: the HTTP API and the analyst console. Nothing is exported yet."""

__all__: list[str] = []
