"""Benchmarks behind `streamssl bench`; each module has add_arguments(parser) and run(args)."""
