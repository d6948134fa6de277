"""The block catalogue: one definition per block (module, cost, latency key) in a registry."""
