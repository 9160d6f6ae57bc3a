"""What recipes build models with, and model files: the config dataclasses, dlcli's own Keras
layers, the parts the image recipes share, safe loading, predict, the export formats, plots."""
