"""SimCLR on Kubeflow Pipelines: components, the pipeline, and the `simclr-kfp` CLI.

Importing this package (or compiling the pipeline) never imports TensorFlow; only the
component bodies, running in our images, do (through `simclr_pipeline.adapters`).
"""

from importlib import metadata

try:  # the default image tag follows the installed distribution's version
    __version__ = metadata.version("simclr-kfp")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"
