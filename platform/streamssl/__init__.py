"""streamssl: self-supervised online continual learning on ordered image streams, on Ray."""

__version__ = "0.1.0"
