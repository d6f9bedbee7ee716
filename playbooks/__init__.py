"""govsoc playbooks: the Ansible content shipped in `playbooks/content/` and the driver that
runs it with ansible-runner, recording every run in the store.

Public API (import from `playbooks`; the modules behind it are internals):

    playbooks() -> {name: Playbook};  get_playbook(name) -> Playbook   (PlaybookError)
    Driver(store, work_dir=None).run(name, inventory, limit=..., extravars=...) -> RunResult
    Driver(...).status(run_id), .cancel(run_id)
    validate_vars(name, variables) -> dict   the run's variables checked against the
                                             playbook's schema; PlaybookError if refused
    ansible_env(run_dir) -> the environment ansible-playbook runs with (our config, modules)
    Fleet (playbooks.fleet): the namespace test fleet the tests and benchmarks run on
    RunRequests(store, work_dir, inventory=, departments=): requested runs, approval,
        claim (once across workers), cancel, undo, live events (RequestError);
    playbook_info() -> what each playbook takes and whether it has an undo
"""

from soc_core.lazy import lazy_exports

_WHERE = {
    "playbooks": "catalog", "get_playbook": "catalog", "Playbook": "catalog",
    "PlaybookError": "catalog", "Driver": "driver", "RunResult": "driver",
    "ansible_env": "driver", "Fleet": "fleet", "validate_vars": "variables",
    "RunRequests": "run_requests", "RequestError": "run_requests",
    "playbook_info": "run_requests",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
