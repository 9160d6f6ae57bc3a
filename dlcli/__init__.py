"""dlcli: classic deep-learning recipes in modern Keras 3, trained under any tf.distribute strategy."""

__version__ = "0.1.0"
