"""`streamssl demo` (being written)."""


def register(sub):
    sub.add_parser("demo", help="(being written)")
