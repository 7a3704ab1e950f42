"""Experiment configs (ml_collections): `python main.py --config configs/<name>.py`."""
