"""Facts of PCam and of the design that the device and workstation sides share (defined here only)."""

PCAM_MPP = 0.972  # µm per pixel of PCam's patches: Camelyon16's 0.243 µm/px at 40x, taken at 10x
PATCH_SHAPE = (96, 96, 3)  # one PCam patch: height, width, RGB (the model's input)
FEATURE_SHAPE = (12, 12, 256)  # the model's last feature map (Grad-CAM's input): rows, cols, channels
