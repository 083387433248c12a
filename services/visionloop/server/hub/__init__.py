"""The hub: projects, images, annotations, models, deployments, trainings, nodes, events."""
