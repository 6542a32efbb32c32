"""Where candidate work units run: ``local`` subprocesses or a ``ray`` cluster (SPEC 10)."""
