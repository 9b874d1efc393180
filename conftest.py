"""Root pytest configuration: load the curriculum grading plugin (see curriculum/README.md)."""

pytest_plugins = ["curriculum.pytest_plugin"]
