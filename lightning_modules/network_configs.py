"""The networks' hyper-parameter groups and constructors, as ``networks`` provides them (issue #13): this module only
re-exports them for the LightningModules that import them from here."""

from networks import (  # noqa: F401
    FDMUNet,
    FDMUNetConfig,
    RaMViDUNet,
    RaMViDUNetConfig,
    RVDNetwork,
    RVDNetworkConfig,
    VDMUNet,
    VDMUNetConfig,
)
