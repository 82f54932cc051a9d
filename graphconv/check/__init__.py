"""Tools over the layers below: gradcheck of ops and specs, the autograd oracle, reference comparison and the
shape trace behind ``graphconv run``."""
