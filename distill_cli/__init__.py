"""distill: turn an expensive teacher model's recorded calls into a cheaper, gated student."""

__version__ = "0.1.0"
