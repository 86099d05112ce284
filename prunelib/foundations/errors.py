"""Errors that are the user's to fix; the CLI prints them as one line, without a traceback."""


class PrunelibError(Exception):
    pass
