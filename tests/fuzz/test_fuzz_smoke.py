"""The fuzz harness in `make test`: every target replays its seeds, the regression inputs
kept under tests/fuzz/regressions/<target>/ (crashes `make fuzz` found), and a few hundred
deterministic mutations; no exception but the target's own clear errors may escape.
The coverage-guided run is `make fuzz` (atheris, a time box per target)."""

from __future__ import annotations

import pytest
from fuzz_mutate import mutations
from fuzz_targets import targets

TARGETS = targets()
# mutations per target: the whole smoke stays within seconds (Sigma and EVTX are the slow)
BUDGET = {"sigma": 150, "evtx": 150, "keystore": 300, "pcap": 400}


@pytest.mark.timeout(120)  # a hang is a finding too
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_holds_its_invariant(name):
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds, f"{name} has no seed input"
    for data in seeds:
        target.check(data)
    for label, data in target.regression_inputs():
        try:
            target.check(data)
        except Exception as exc:  # name the kept input that regressed
            raise AssertionError(f"{name} regression input {label}: {exc!r}") from exc
    for data in mutations(seeds, BUDGET.get(name, 600)):
        try:
            target.check(data)
        except Exception as exc:
            raise AssertionError(f"{name} on {data[:200]!r}: {exc!r}") from exc
