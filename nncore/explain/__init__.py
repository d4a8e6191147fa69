"""See inside a trained network: what it computes for one image, and why it decides as it does.

==========================  ==========================================================
:func:`activations`         every layer's output for one image (the forward pass itself)
:func:`conv_filters`        the weights of every convolution layer, (F, C, KH, KW) each
:func:`saliency`            d(class score)/d(input) by the model's own ``backward``
:func:`occlusion`           the drop in a class's probability when a patch is covered
:func:`misclassified`       the images a model gets wrong, with what it said
:mod:`.pictures`            the figures: filter grids, feature maps, the panel of explain.py
==========================  ==========================================================

Every function takes a :class:`~nncore.Sequential` and raw images as ``predict`` does
((H, W) or (C, H, W) uint8 0-255 or float 0-1); the model is used in evaluation mode
(BatchNorm's running statistics, no dropout) and is not changed.
"""

from .activations import activations, conv_filters
from .mistakes import misclassified
from .occlusion import occlusion, occlusion_heatmap
from .saliency import saliency

__all__ = ["activations", "conv_filters", "misclassified", "occlusion", "occlusion_heatmap", "saliency"]
