"""Train every layer and score every selector against that truth (``python -m analysis sweep``)."""
