"""NAS-Bench-201: the cell space (``space``), its CIFAR network (``network``) and its weight sharing (``supernet``).

A space family of its own beside the YAML spaces: ``nas.load_space("nb201")`` returns :class:`NB201Space`;
``nas.build`` / ``nas.count`` and the supernet hand its archs to this package.
"""
