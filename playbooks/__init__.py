"""govsoc playbooks: the shipped Ansible playbooks, the driver that runs them, the test fleet.

Public interface for other packages (the API):

    validate_vars(name, variables) -> dict   the run's variables checked against the
                                             playbook's schema; PlaybookError if refused
    PlaybookError                            a user error about a playbook run
"""

from playbooks.catalog import PlaybookError
from playbooks.variables import validate_vars

__all__ = ["PlaybookError", "validate_vars"]
