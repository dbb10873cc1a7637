"""`streamssl run` (being written)."""


def register(sub):
    sub.add_parser("run", help="(being written)")
