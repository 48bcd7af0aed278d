"""``python -m mlengine.cli`` runs the CLI (used by tests and when the script is not on PATH)."""

from mlengine.cli.main import main

main()
