"""Switch-off schedules for weight decay (or HAM's ``beta``): ``value(k) if k < switch_step else 0``."""

from ham_optax._src.schedules import switch_off, switch_off_fraction

__all__ = ["switch_off", "switch_off_fraction"]
