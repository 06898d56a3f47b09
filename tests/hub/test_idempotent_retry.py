"""A CLI registration killed right after its commit, then retried with the same key.

The client never heard back, so it retries: with ``--idempotency-key`` the retry
answers with the version the first attempt committed and stores nothing more; a
retry without a key would have made a duplicate. (The HTTP ``Idempotency-Key`` and
the remote client's automatic key: tests/server/test_api.py and test_remote.py;
retries after a PostgreSQL or radosgw failure: tests/scale/test_service_faults.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

# `sentenialx ARGS` that SIGKILLs itself as soon as the completing transaction commits,
# before it can print anything (as a machine losing power at that moment).
KILLED_AFTER_COMMIT = textwrap.dedent("""
    import os, signal, sys
    from sentenialx.hub.index.sql import SqlIndex
    real = SqlIndex.complete_version

    def complete_version(self, *a, **k):
        out = real(self, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    SqlIndex.complete_version = complete_version
    from sentenialx.cli import main
    main(sys.argv[1:])
""")


def test_cli_retry_after_a_kill_past_the_commit_returns_the_first_version(hub, sample_file,
                                                                          cli) -> None:
    hub.register("m", sample_file(100, seed=1))
    src = sample_file(2000, seed=2)
    args = ["models", "register", "m", str(src), "--json", "--idempotency-key", "nightly-17",
            "--hub", str(hub.root)]
    r = subprocess.run([sys.executable, "-c", KILLED_AFTER_COMMIT, *args], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == -signal.SIGKILL and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    committed = hub.resolve("m@1.0.1")
    events = len(hub.events())
    # The retry: same key, same request. The first attempt's version, nothing new stored.
    again = cli("register", "m", src, "--json", "--idempotency-key", "nightly-17")
    assert again.exit_code == 0, again.stderr
    doc = json.loads(again.stdout)
    assert (doc["version"], doc["digest"]) == ("1.0.1", committed.digest)
    assert [v.version for v in hub.versions("m")] == ["1.0.0", "1.0.1"]
    assert len(hub.events()) == events and not hub.index.pending_versions()
    # The kill left the views one write behind; fsck says so and --repair mends them.
    assert {p.kind for p in hub.fsck().problems} == {"registry", "view"}
    assert cli("fsck", "--repair").exit_code == 0
    rep = hub.fsck(deep=True)
    assert rep.ok, [p.message for p in rep.problems]
    assert hub.open("m@1.0.1") == src.read_bytes()
