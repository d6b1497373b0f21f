"""The device side: everything here runs with numpy, pillow, h5py, tifffile and a TFLite
interpreter only. It never imports TensorFlow or the workstation side."""
