"""Label Studio as VisionLoop's labelling UI: an ML backend and webhook receiver over the hub
(``server``, ``bridge``), the project set-up (``project``) and the formats between them
(``regions``, ``brush``)."""
