"""Replay buffer storage, selection policies, diversity selection and global dedup."""

from streamssl.buffers.base import SelectionPolicy, resize
from streamssl.buffers.dedup import global_dedup
from streamssl.buffers.density import density_sample
from streamssl.buffers.diverse import Diverse
from streamssl.buffers.fifo import FIFO
from streamssl.buffers.hard import Hard
from streamssl.buffers.psa import PSA, psa_select
from streamssl.buffers.reservoir import Reservoir
from streamssl.buffers.selection import oldest, select_diverse
from streamssl.buffers.storage import ReplayBuffer

POLICIES: dict[str, type[SelectionPolicy]] = {"fifo": FIFO, "reservoir": Reservoir, "diverse": Diverse, "psa": PSA,
                                             "hard": Hard}

__all__ = [
    "POLICIES",
    "FIFO",
    "Hard",
    "Diverse",
    "PSA",
    "ReplayBuffer",
    "Reservoir",
    "SelectionPolicy",
    "density_sample",
    "global_dedup",
    "oldest",
    "psa_select",
    "resize",
    "select_diverse",
]
