"""Workstation side (TensorFlow)."""
