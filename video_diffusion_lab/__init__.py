"""FDM, VDM, RVD and RaMViD video diffusion on one core, trained and evaluated with PyTorch Lightning.

The core (``diffusion``, ``networks``, ``metrics``, ``video_io``) needs no Lightning; ``lightning_modules``,
``datamodules`` and ``callbacks`` wire it into Lightning; ``cli`` is the ``vdiff`` command.
"""

__version__ = "0.2.0"

__all__ = ["Run", "load_run"]


def __getattr__(name: str):
    # The notebook API pulls in Lightning; import it on first use so that the core stays light to import.
    if name in __all__:
        from video_diffusion_lab import api

        return getattr(api, name)
    raise AttributeError(f"module 'video_diffusion_lab' has no attribute {name!r}")
