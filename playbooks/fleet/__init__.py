"""The namespace test fleet (see `harness`)."""

from playbooks.fleet.harness import Fleet, FleetError, FleetState, Host, check_address

__all__ = ["Fleet", "FleetError", "FleetState", "Host", "check_address"]
