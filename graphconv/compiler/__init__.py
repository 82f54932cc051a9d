"""Op graph → differentiable torch op: bind names per call, run forward and the hand-written VJPs."""
