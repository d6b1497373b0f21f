"""edge-pcam: a lymph-node metastasis detector from training to a Raspberry Pi or a Coral board.

The device side (`edge_pcam.runtime`) needs only numpy, pillow, h5py, tifffile
and a TFLite interpreter; everything that needs TensorFlow lives elsewhere and
is imported lazily by the commands that use it.
"""

__version__ = "0.1.0"
