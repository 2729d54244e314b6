"""Type names shared across the library."""

from typing import Any

# A nested structure of arrays (parameters, optimiser state, metrics).
PyTree = Any
# A batch of windows: field name -> array with the batch as its leading axis. Host numpy as the
# input pipeline yields it, or device arrays inside jitted functions; evaluation batches also
# carry host-side metadata (subject, action, camera, sequence and frame indices).
Batch = dict[str, Any]
