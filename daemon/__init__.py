"""avid: an audio-visual identity daemon that opens a door (package ``daemon``)."""

import os

# numpy's OpenBLAS threads spin and stall the small matrix products avid makes (a 40x201 mel
# filterbank, a 2x2 SVD) whenever the cores are busy with the models: 48 ms instead of 0.09 ms
# measured under load. The models have their own thread setting (models.num_threads).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
del _variable
