"""Metrics shared by studies: segmentation overlap and surface distances, detection AP."""
