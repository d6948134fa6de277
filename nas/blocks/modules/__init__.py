"""The torch modules of the blocks, one file per block; their definitions (costs, keys) are torch-free."""
