"""Formats layer: packing, unpacking and validation of the CPU-independent packed blobs (q8, q4, sparse,
bitmap), and the schema a compressed module's saved form is described by (:mod:`.manifest`).
"""

from .packed import Q4Info, Q8Info, pack_q4, pack_q8, q4_info, q8_info, unpack_q4, unpack_q8

__all__ = ["Q4Info", "Q8Info", "pack_q4", "pack_q8", "q4_info", "q8_info", "unpack_q4", "unpack_q8"]
