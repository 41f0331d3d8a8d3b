"""Fast, vectorised versions of ops whose readable form lives in the teaching modules.

A teaching module (`boxes`, `roi_ops`) states the paper's algorithm plainly and calls the kernel
here for speed; the tests check that both give the same answer. Read the module first.
"""
