"""Registration of the pre-ablation CT (moving) onto the post-ablation CT (fixed) with elastix.

The resulting transform maps **post-space points to pre-space points** (ITK convention), so it
resamples pre-grid images (tumour mask, its signed distance) onto the post grid directly; the
tumour transfer itself is the next stage, :mod:`a0verify.transfer`.

Modules: ``initial`` (starting transform), ``roi`` (region of interest, metric masks),
``artefacts`` (probe, metal streaks, gas: left out of the metric), ``elastix`` (parameter maps,
one elastix run, conversion to SimpleITK), ``qa`` (checks, restarts' disagreement, uncertainty),
``register`` (settings, retry ladder, the attempt loop), ``synthetic`` (test pairs with known
transforms), ``elastix_backend`` (fast loading of itk-elastix).
"""

from a0verify.registration.elastix import parameter_file
from a0verify.registration.register import (
    LADDER,
    Attempt,
    RegistrationMasks,
    RegistrationResult,
    RegistrationSettings,
    register,
    write_registration_outputs,
)

__all__ = [
    "LADDER",
    "Attempt",
    "RegistrationMasks",
    "RegistrationResult",
    "RegistrationSettings",
    "parameter_file",
    "register",
    "write_registration_outputs",
]
