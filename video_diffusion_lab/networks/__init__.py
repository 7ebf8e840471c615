"""Networks as plain ``nn.Module``s, one file per method, built from the named blocks in ``networks.blocks``; the
improved-diffusion U-Nets (RaMViD, FDM, VDM) share one skeleton, ``networks.unet``. Each network's hyper-parameters
are a frozen config dataclass; the clip shape is passed to the constructor apart from it."""

from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig
from video_diffusion_lab.networks.position_regressor import PositionRegressor
from video_diffusion_lab.networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig
from video_diffusion_lab.networks.rvd import (
    ContextEncoder,
    ConvGRUCell,
    FramePredictor,
    ResidualUNet,
    RVDNetwork,
    RVDNetworkConfig,
)
from video_diffusion_lab.networks.vdm_unet import VDMUNet, VDMUNetConfig

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
