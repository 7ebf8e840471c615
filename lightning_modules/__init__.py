"""One LightningModule per paper, all on the shared core in ``diffusion/``."""

from lightning_modules.ramvid import RaMViD
from lightning_modules.rvd import RVD
from lightning_modules.video_diffusion import VideoDiffusionModule

__all__ = ["RaMViD", "RVD", "VideoDiffusionModule"]
