"""One LightningModule per paper, all on the shared core in ``diffusion/``."""

from lightning_modules.carla_regressor import CARLAPositionRegressor
from lightning_modules.fdm import FDM
from lightning_modules.ramvid import RaMViD
from lightning_modules.rvd import RVD
from lightning_modules.vdm import VDM
from lightning_modules.video_diffusion import VideoDiffusionModule

__all__ = ["CARLAPositionRegressor", "FDM", "RaMViD", "RVD", "VDM", "VideoDiffusionModule"]
