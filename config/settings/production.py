"""Production settings: everything secure by default, secrets required from the environment.

`SECRET_KEY=... ALLOWED_HOSTS=... manage.py check --deploy` reports no issue with the defaults
(tests/config/test_deploy.py keeps it so); each one can be relaxed from the environment.
"""

from __future__ import annotations

import os

from config.env import env_bool, env_int, env_list
from config.settings.base import *  # noqa: F403

DEBUG = False
SECRET_KEY = os.environ["SECRET_KEY"]
# TLS ends at the proxy in front of the app, which says so in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Paths (regexes, without the leading slash) still answered over plain HTTP: load balancers
# probe /health from inside the network.
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT", [r"^health$"])
# One year of HSTS; start with a few minutes (e.g. 300) on a new domain until HTTPS is proven,
# since browsers then refuse plain HTTP for that long.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
