"""Benchmarks: `edge-pcam bench` (runner, report, plots) and the measuring parts the scripts in benchmarks/ share.

Runs on a device without TensorFlow: TensorFlow is imported only for Keras
rows, the int8 probe file and training-step timing.
"""
