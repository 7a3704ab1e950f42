"""The command line's own parts: checking a config and a workdir before any work starts.
`main.py` composes the modes from `training/` and `evaluation/`; nothing imports `main`."""
