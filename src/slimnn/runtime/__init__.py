"""Runtime layer: what this CPU can do (ISA detection and forcing), the kernel tables, and thread counts.

Imports nothing of slimnn above ``_C``.
"""
