"""One exception type for bad input: the CLI prints its message on one line and exits with 2."""


class DamocError(Exception):
    """A user-facing error: bad input, an unknown name, a model that cannot be handled.

    The message must be one line that says what is wrong and, where possible, what to do.
    """

    exit_code = 2


class OptionalDependencyError(DamocError):
    """An optional library is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"this needs the optional package '{package}': pip install 'damoc[{extra}]'")
        self.package = package
        self.extra = extra


def require(module: str, extra: str):
    """Import an optional module lazily, raising an error that names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise OptionalDependencyError(module.split(".")[0], extra) from exc
