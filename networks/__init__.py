"""Networks as plain ``nn.Module``s, one file per method, built from the named blocks in ``networks.blocks``."""

from networks.fdm_unet import FDMUNet
from networks.position_regressor import PositionRegressor
from networks.ramvid_unet import RaMViDUNet
from networks.rvd import ContextEncoder, ConvGRUCell, FramePredictor, ResidualUNet, RVDNetwork
from networks.vdm_unet import VDMUNet

__all__ = [
    "ContextEncoder",
    "ConvGRUCell",
    "FDMUNet",
    "FramePredictor",
    "PositionRegressor",
    "RaMViDUNet",
    "ResidualUNet",
    "RVDNetwork",
    "VDMUNet",
]
