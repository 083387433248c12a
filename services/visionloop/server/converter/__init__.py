"""The converter: turns models into deployable formats."""
