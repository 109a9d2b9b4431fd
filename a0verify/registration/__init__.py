"""Registration of the pre-ablation CT (moving) onto the post-ablation CT (fixed) with elastix.

The resulting transform maps **post-space points to pre-space points** (ITK convention), so it
resamples pre-grid images (tumour mask, its signed distance) onto the post grid directly.

Modules: ``initial`` (starting transform), ``roi`` (region of interest, metric masks),
``artefacts`` (probe, metal streaks, gas: left out of the metric), ``elastix`` (parameter maps,
one elastix run, conversion to SimpleITK), ``qa`` (checks, restarts' disagreement, uncertainty),
``register`` (settings, retry ladder, the attempt loop), ``synthetic`` (test pairs with known
transforms), ``elastix_backend`` (fast loading of itk-elastix).
"""

from a0verify.registration.elastix import parameter_file
from a0verify.registration.levelset import half_voxel_signed_distance, tumor_levelsets_to_post
from a0verify.registration.register import (
    LADDER,
    Attempt,
    RegistrationMasks,
    RegistrationResult,
    RegistrationSettings,
    register,
    resample_tumor_to_post,
    set_threads,
    write_registration_outputs,
)

__all__ = [
    "LADDER",
    "Attempt",
    "RegistrationMasks",
    "RegistrationResult",
    "RegistrationSettings",
    "half_voxel_signed_distance",
    "parameter_file",
    "register",
    "resample_tumor_to_post",
    "set_threads",
    "tumor_levelsets_to_post",
    "write_registration_outputs",
]
