"""The run machinery `train.py` calls: one concern per module (see each module's docstring)."""
