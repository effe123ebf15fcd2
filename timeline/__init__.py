"""timeline: an event-sourced longitudinal patient timeline engine."""

__version__ = "0.1.0"
