"""SSL losses as pure functions of projections; tensor shapes are in each docstring.

Collectives never happen here: losses with negatives take gathered tensors as arguments.
"""

from streamssl.losses.byol import byol_loss
from streamssl.losses.empssl import cosine_to_mean_loss, empssl_loss
from streamssl.losses.mcc import mcc_loss
from streamssl.losses.ntxent import nt_xent_loss
from streamssl.losses.simsiam import simsiam_loss
from streamssl.losses.tcr import tcr_loss

__all__ = ["byol_loss", "cosine_to_mean_loss", "empssl_loss", "mcc_loss", "nt_xent_loss", "simsiam_loss", "tcr_loss"]
