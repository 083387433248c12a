"""The hub's SQL storage: schema, versioned migrations, and a small access layer."""
