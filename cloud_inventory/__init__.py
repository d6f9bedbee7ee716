"""govsoc cloud_inventory: asset registry, discovery, exposure, idle systems, compliance
checks and signed reports. Nothing is exported yet."""

__all__: list[str] = []
