"""`streamssl stream` (being written)."""


def register(sub):
    sub.add_parser("stream", help="(being written)")
