import re

from django.core.validators import EmailValidator
from django.utils.regex_helper import _lazy_re_compile


class InternationalEmailValidator(EmailValidator):
    """Accepts non-ASCII local parts (RFC 6531), e.g. ``márcia_oliveria@example.com``.

    Django's validator allows only ASCII before the ``@``; the demo data (and real customers)
    have accented names there.
    """

    user_regex = _lazy_re_compile(
        r"(^[-!#$%&'*+/=?^_`{}|~\w]+(\.[-!#$%&'*+/=?^_`{}|~\w]+)*\Z)",
        re.IGNORECASE | re.UNICODE,
    )


validate_international_email = InternationalEmailValidator()
