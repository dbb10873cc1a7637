"""`streamssl report` (being written)."""


def register(sub):
    sub.add_parser("report", help="(being written)")
