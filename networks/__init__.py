"""Networks as plain ``nn.Module``s, one file per method, built from the named blocks in ``networks.blocks``; the
improved-diffusion U-Nets (RaMViD, FDM, VDM) share one skeleton, ``networks.unet``. Each network's hyper-parameters
are a frozen config dataclass; the clip shape is passed to the constructor apart from it."""

from networks.fdm_unet import FDMUNet, FDMUNetConfig
from networks.position_regressor import PositionRegressor
from networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig
from networks.rvd import ContextEncoder, ConvGRUCell, FramePredictor, ResidualUNet, RVDNetwork, RVDNetworkConfig
from networks.vdm_unet import VDMUNet, VDMUNetConfig

__all__ = [
    "ContextEncoder",
    "ConvGRUCell",
    "FDMUNet",
    "FDMUNetConfig",
    "FramePredictor",
    "PositionRegressor",
    "RaMViDUNet",
    "RaMViDUNetConfig",
    "ResidualUNet",
    "RVDNetwork",
    "RVDNetworkConfig",
    "VDMUNet",
    "VDMUNetConfig",
]
