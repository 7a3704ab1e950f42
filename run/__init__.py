"""The process and its workdir: the path map, atomic checkpoint and progress files, the
distributed set-up and gathers, and the builders that turn a config into objects.

Used by `training/` and `evaluation/` (which never import each other) and by `main.py`.
"""
