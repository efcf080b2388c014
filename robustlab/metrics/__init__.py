"""Metrics: classification (accuracy, mAP, AUC, d', ECE, bootstrap CIs); perceptual, sharpness and
geometry metrics arrive with their issues."""
