"""SSL losses as pure functions of projections; tensor shapes are in each docstring.

Collectives never happen here: losses with negatives take gathered tensors as arguments.
"""

from streamssl.losses.byol import byol_loss
from streamssl.losses.empssl import cosine_to_mean_loss, empssl_loss
from streamssl.losses.ird import ird_loss
from streamssl.losses.mcc import mcc_loss
from streamssl.losses.ntxent import nt_xent_loss
from streamssl.losses.psc import psc_loss, similarity_mask
from streamssl.losses.simsiam import simsiam_loss
from streamssl.losses.tcr import tcr_loss

__all__ = ["byol_loss", "cosine_to_mean_loss", "empssl_loss", "ird_loss", "mcc_loss", "nt_xent_loss", "psc_loss",
           "similarity_mask", "simsiam_loss", "tcr_loss"]
