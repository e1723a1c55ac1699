"""Small helpers with no domain knowledge: atomic files and locks, record readers, settings records,
flags from dataclasses, user errors."""
