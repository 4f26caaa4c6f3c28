"""The receptive-field atlas: every torchvision network, the detection backbones and timm's
convolutional families, stage by stage (``python -m rfviz atlas`` writes ``docs/atlas/``).

Each network is built with ``weights=None`` on the meta device (shapes, no numbers: nothing is
downloaded, nothing initialised) and traced by :func:`rfviz.trace`. A *stage end-point* is the
output of the last module before each downsampling (torchvision's ``layer1`` … ``layer4``,
``features.N``; timm's ``feature_info``). Its row holds the field, jump and effective padding per
axis at 224 (and at the network's default size where that differs), the exact tile margins,
and the smallest input the network accepts; "global" or "unknown: <reason>" where that is
what rfviz finds.

One module per job, dependencies pointing down the list:

- :mod:`.same`: timm's TensorFlow-style SAME padding, frozen for one input size at a time;
- :mod:`.networks`: which networks (:func:`catalogue`, :func:`find`), built on the meta device
  (:func:`build`, :func:`part`), traced (``traced``);
- :mod:`.stages`: each network's stage end-points;
- :mod:`.rows`: one network's rows (:func:`network_rows`, :data:`COLUMNS`);
- :mod:`.workers`: every network's rows in worker processes (:func:`generate`), :func:`merge`;
- :mod:`.markdown` and :mod:`.writers`: ``README.md``, ``atlas.csv``, ``atlas.json``
  (:func:`write`, :func:`read`).

>>> row = network_rows("resnet18", complete=False)[-1]
>>> row["stage"], row["field"], row["jump"], row["padding"]
('layer4', [435, 435], [32, 32], [217, 217])
"""

from .markdown import GROUPS, readme, short
from .networks import FRAMES, SIZE, TIMM, V1, Network, build, catalogue, find, part, versions
from .rows import COLUMNS, REFERENCE, network_rows, reference_rows
from .stages import STAGES
from .workers import generate, merge
from .writers import read, to_csv, write

__all__ = ["COLUMNS", "FRAMES", "GROUPS", "REFERENCE", "SIZE", "STAGES", "TIMM", "V1", "Network",
           "build", "catalogue", "find", "generate", "merge", "network_rows", "part", "read",
           "readme", "reference_rows", "short", "to_csv", "versions", "write"]
