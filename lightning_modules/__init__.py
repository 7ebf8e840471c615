"""One LightningModule per paper, all on the shared core in ``diffusion/``."""

from video_diffusion_lab.lightning_modules.carla_regressor import CARLAPositionRegressor
from video_diffusion_lab.lightning_modules.fdm import FDM
from video_diffusion_lab.lightning_modules.ramvid import RaMViD
from video_diffusion_lab.lightning_modules.rvd import RVD
from video_diffusion_lab.lightning_modules.vdm import VDM
from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule

__all__ = ["CARLAPositionRegressor", "FDM", "RaMViD", "RVD", "VDM", "VideoDiffusionModule"]
