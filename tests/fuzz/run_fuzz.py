"""Coverage-guided fuzzing of one target with atheris (libFuzzer), for `make fuzz`.

    python tests/fuzz/run_fuzz.py --list
    python tests/fuzz/run_fuzz.py TARGET [libFuzzer flags, e.g. -max_total_time=60]

The corpus starts from the target's seeds and kept regression inputs (in a temporary
folder: the run's own corpus is not kept). A crash, a hang past `-timeout` or memory past
`-rss_limit_mb` is written to tests/fuzz/regressions/TARGET/ (libFuzzer's crash-/timeout-/
oom- files): fix the cause and keep the file, `make test` replays it from then on.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402
from fuzz_targets import REGRESSIONS, targets  # noqa: E402

PROJECT = ["soc_core", "collectors", "detections", "crypto_svc", "playbooks"]


def main(argv: list[str]) -> None:
    if len(argv) > 1 and not argv[1].startswith("-"):
        # the project's modules are imported here first, so all of them are instrumented
        with atheris.instrument_imports(include=PROJECT):
            every = targets()
    else:
        every = targets()
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(2)
    if argv[1] == "--list":
        for name, t in every.items():
            print(f"{name:14} {t.covers}")
        return
    target = every.get(argv[1])
    if target is None:
        sys.exit(f"unknown fuzz target {argv[1]!r}; one of {', '.join(every)}")
    with atheris.instrument_imports(include=PROJECT):
        for module in target.modules:
            importlib.import_module(module)
        seeds = target.seeds()
        for data in seeds:  # imports what the target uses, inside the instrumentation
            target.check(data)
    corpus = Path(tempfile.mkdtemp(prefix=f"govsoc-corpus-{target.name}-"))
    for i, data in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(data)
    for label, data in target.regression_inputs():
        (corpus / label).write_bytes(data)
    artifacts = REGRESSIONS / target.name
    artifacts.mkdir(parents=True, exist_ok=True)
    flags = [a for a in argv[2:] if a.startswith("-")]
    atheris.Setup([argv[0], *flags, f"-artifact_prefix={artifacts}/", str(corpus)],
                  target.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
