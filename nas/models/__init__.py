"""Standard PyTorch models of archs: plain torch modules, no supernet classes."""
from nas.models.build import Network, build, fuse

__all__ = ["Network", "build", "fuse"]
