"""`streamssl prepare` (being written)."""


def register(sub):
    sub.add_parser("prepare", help="(being written)")
