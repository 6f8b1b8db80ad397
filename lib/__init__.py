"""textseg: text-guided 3D segmentation for MONAI Label."""
