"""Networks as plain ``nn.Module``s, one file per method, built from the named blocks in ``networks.blocks``."""

from networks.ramvid_unet import RaMViDUNet

__all__ = ["RaMViDUNet"]
