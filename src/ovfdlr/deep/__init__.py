"""Deep transfer-learning features: ResNet-50 backbones, inputs, extraction, fine-tuning, Grad-CAM.

Importing this package does not import torch; the modules that need it do.
"""
