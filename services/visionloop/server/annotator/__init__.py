"""The annotator: interactive annotation, pre-annotation and ranking."""
