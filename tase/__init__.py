"""TASE: long-tailed self-supervised learning with sample-level tail encouragement.

One module per concern: ``data``, ``augment``, ``models``, ``losses``, ``cluster``, ``methods``,
``train``, ``evaluate``, ``diagnostics``, ``figures``, ``tables``, ``config``, ``paths``,
``progress``. Importing the package is cheap; import the module you need.
"""

__version__ = "0.1.0"
