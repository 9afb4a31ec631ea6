"""evdet.model: the RVT detector, its losses, training and detection entry points."""
