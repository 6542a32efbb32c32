from damoc.cli import run

run()
