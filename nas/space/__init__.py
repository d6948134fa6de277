"""Search spaces: the YAML language, Arch values, sampling, and the network plan of an arch."""
from nas.space.arch import Arch, LayerChoice, StageChoice
from nas.space.space import SearchSpace, builtin_spaces, load_arch, load_space

__all__ = ["Arch", "LayerChoice", "SearchSpace", "StageChoice", "builtin_spaces", "load_arch", "load_space"]
