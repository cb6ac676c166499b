"""auto-review: self-hosted AI pull-request reviewer."""

__version__ = "0.1.0"
