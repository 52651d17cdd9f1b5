"""How often one client may try to sign up, over the API and the web page alike."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class RegistrationRateThrottle(SimpleRateThrottle):
    """Sign-up attempts per client address, in the DRF scope `register`.

    The rate is REGISTRATION_THROTTLE_RATE (env THROTTLE_REGISTER), read on every request
    rather than from DRF's DEFAULT_THROTTLE_RATES, which DRF's throttle classes capture at
    import. Every attempt counts, failed ones too: they are what guessing looks like.
    """

    scope = "register"

    def get_rate(self) -> str | None:
        return settings.REGISTRATION_THROTTLE_RATE  # type: ignore[no-any-return]

    def get_cache_key(self, request: Any, view: Any) -> str:
        # Only request.META is read, so the web page passes its plain HttpRequest too.
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
