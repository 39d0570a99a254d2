"""Always-on aliases: hand-over before walltime, recovery from failed jobs.

``policy`` is the pure decision core; the supervisor applies its actions.
"""
