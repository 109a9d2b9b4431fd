"""Registration of the pre-ablation CT (moving) onto the post-ablation CT (fixed) with elastix.

The resulting transform maps **post-space points to pre-space points** (ITK convention), so it
resamples pre-grid images (tumour mask) onto the post grid directly.
"""

from a0verify.registration.register import (
    RegistrationResult,
    register,
    resample_tumor_to_post,
)

__all__ = ["RegistrationResult", "register", "resample_tumor_to_post"]
