"""Where candidate work units run: ``local`` subprocesses or a ``ray`` cluster (docs/selection.md)."""
