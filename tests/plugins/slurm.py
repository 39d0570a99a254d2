"""Fixtures for the real slurm component (filled by its issue)."""
