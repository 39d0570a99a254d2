"""Fixtures for the real sshd component (filled by its issue)."""
