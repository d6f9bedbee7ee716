"""govsoc core: config, the ECS event model, the event store and the CLI composer.

It imports none of the packages above it (collectors, detections, crypto_svc, playbooks,
cloud_inventory, soc_api); they add their commands through `govsoc.commands` entry points.
"""
