"""azr: the Absolute Zero Reasoner — self-play RL with verifiable rewards and zero external data.

Entry points: ``azr.train.train`` (and the ``azr`` CLI in ``azr.cli``), the sandbox in
``azr.executor``, the algorithm's stages in ``azr.selfplay``, and the model backend in
``azr.policy``. ``docs/ALGORITHM.md`` maps the paper to the code.
"""

__version__ = "0.1.0"
