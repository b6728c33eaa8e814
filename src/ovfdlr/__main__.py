from ovfdlr.cli import app

app(prog_name="ovfdlr")
