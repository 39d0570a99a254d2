"""One module per CLI command; each exposes ``command`` (a click command).

Module level: click and the standard library only. Import the library's
heavier parts inside the command function.
"""
