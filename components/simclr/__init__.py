"""SimCLR for CIFAR-10: the code that runs inside the containers.

Pure library: data, augmentation, model, loss, optimiser, training, evaluation and
object storage. Nothing here imports KFP; `simclr_pipeline` adapts it to KFP.
"""

__version__ = "0.1.0"
