"""SimCLR on Kubeflow Pipelines: components, the pipeline, and the `simclr-kfp` CLI.

Importing this package (or compiling the pipeline) never imports TensorFlow; only the
component bodies, running in our images, do (through `simclr_pipeline.adapters`).
"""

__version__ = "0.1.0"
