"""Exception hierarchy. The CLI maps each class to a documented exit code.

Exit codes (also in ``a0verify --help`` and README):

====  ==========================================================================
0     ran to the end (whatever the verdict, unless ``--fail-unless-a0``)
1     verdict is not A0 and ``--fail-unless-a0`` was given
2     bad usage or bad input (one clear line on stderr, nothing written)
3     registration failed (after retries)
4     segmentation failed
5     a batch finished but one or more cases failed
6     ``send`` / ``--send``: the PACS node did not store every file (:mod:`a0verify.pacs`)
70    internal error (a bug: please report it with ``A0VERIFY_DEBUG=1`` output)
130   interrupted or aborted (Ctrl-C, or an aborted prompt): nothing looks finished
====  ==========================================================================
"""

from __future__ import annotations


class A0Error(Exception):
    """Base class of all errors a0verify reports to users as one line."""

    exit_code = 70


class InputError(A0Error):
    """A user-supplied file, directory, parameter or seed is missing, unreadable or invalid.

    The message must name the offending file (or option) and the problem.
    """

    exit_code = 2


class RegistrationError(A0Error):
    """Registration did not converge or failed its quality checks after retries."""

    exit_code = 3


class SegmentationError(A0Error):
    """Semi-automatic segmentation produced no usable mask."""

    exit_code = 4


class BatchError(A0Error):
    """A batch run completed but some cases failed."""

    exit_code = 5


EXIT_NOT_A0 = 1
EXIT_INTERNAL = 70
EXIT_ABORTED = 130
