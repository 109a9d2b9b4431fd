"""Registration of the pre-ablation CT (moving) onto the post-ablation CT (fixed) with elastix.

The resulting transform maps **post-space points to pre-space points** (ITK convention), so it
resamples pre-grid images (tumour mask, its signed distance) onto the post grid directly.
"""

from a0verify.registration.levelset import half_voxel_signed_distance, tumor_levelsets_to_post
from a0verify.registration.register import (
    RegistrationResult,
    parameter_file,
    register,
    resample_tumor_to_post,
    set_threads,
    write_registration_outputs,
)

__all__ = [
    "RegistrationResult",
    "half_voxel_signed_distance",
    "parameter_file",
    "register",
    "resample_tumor_to_post",
    "set_threads",
    "tumor_levelsets_to_post",
    "write_registration_outputs",
]
