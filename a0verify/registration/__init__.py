"""Registration of the pre-ablation CT (moving) onto the post-ablation CT (fixed) with elastix.

The resulting transform maps **post-space points to pre-space points** (ITK convention), so it
resamples pre-grid images (tumour mask, its signed distance) onto the post grid directly; the
tumour transfer itself is the next stage, :mod:`a0verify.transfer`.
"""

from a0verify.registration.register import (
    RegistrationResult,
    parameter_file,
    register,
    write_registration_outputs,
)

__all__ = [
    "RegistrationResult",
    "parameter_file",
    "register",
    "write_registration_outputs",
]
