"""evdet.eval: Prophesee-protocol COCO evaluation."""
