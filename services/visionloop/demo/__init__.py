"""``visionloop demo`` and ``visionloop experiment``: the whole active-learning loop on a synthetic field.

- ``scenes``: the frames robots see, the bootstrap frames and the held-out set, with ground truth.
- ``stack``: hub, detector, trainer and converter in this process (the ``visionloop up`` machinery).
- ``robots``: simulated robots streaming JPEG frames to the detector through the client library.
- ``annotate``: ground truth as the stand-in for people, for the images the hub received.
- ``rounds``: the loop itself, one table row per round.
- ``experiment``: the upload filter's picks against as many random frames, over several seeds.
- ``report``: tables and progress bars.
"""
