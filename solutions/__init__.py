"""Reference implementations, generated from notebooks/ by `python -m curriculum.export`."""
