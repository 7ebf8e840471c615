"""Networks as plain ``nn.Module``s, one file per method, built from the named blocks in ``networks.blocks``."""

from networks.ramvid_unet import RaMViDUNet
from networks.rvd import ContextEncoder, ConvGRUCell, FramePredictor, ResidualUNet, RVDNetwork

__all__ = ["ContextEncoder", "ConvGRUCell", "FramePredictor", "RaMViDUNet", "ResidualUNet", "RVDNetwork"]
