"""The training losses: SimOTA assignment, the YOLOX loss and the size-aware weights.

Modules:

- :mod:`evdet.model.loss.simota`: SimOTA dynamic-k label assignment.
- :mod:`evdet.model.loss.yolox_loss`: IoU + BCE objectness/class (+ L1) loss.
- :mod:`evdet.model.loss.size_aware`: size-aware per-box weights.

The public names below load their module on first use (``lazy_loader``, SPEC 1), so importing one module of this
package does not import the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "simota": ["simota_assign", "simota_assign_batch"],
        "size_aware": ["SizeAwareWeighting"],
        "yolox_loss": ["YOLOXLoss"],
    },
)
